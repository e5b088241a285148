"""A generator of malformed datasets in every input format, with the expected location of each defect.

``write_corpus(folder, seed)`` writes one file per format (JSONL chat, pretty-printed JSON array
of alpaca rows, sharegpt, preference, CSV, Parquet, txt, a file mixing formats) where good
rows carry a unique ``good-<n>`` token and every defect is recorded as an :class:`Expected`
(file, line or row). Defects: wrong roles, missing fields, wrong types, empty content, invalid
UTF-8, truncated lines/files, duplicate keys, deep nesting, lone surrogate escapes, oversized
rows, missing commas, unbalanced quotes/braces, non-object rows.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LIMIT = 20_000  # max_row_bytes the fuzz specs use; "huge" rows are bigger
HUGE = "x" * 30_000


@dataclass(frozen=True)
class Expected:
    """A defect: file name, and its line (text formats) or row (Parquet)."""

    file: str
    line: int | None = None
    row: int | None = None


@dataclass
class Corpus:
    """What was written: the dataset specs, the defects, and the ids of every good row."""

    specs: list[dict[str, Any]] = field(default_factory=list)
    expected: list[Expected] = field(default_factory=list)
    good: set[str] = field(default_factory=set)


class _Ids:
    def __init__(self) -> None:
        self.n = 0

    def good(self, corpus: Corpus) -> str:
        self.n += 1
        token = f"good-{self.n}"
        corpus.good.add(token)
        return token


def _chat(token: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"Question {token}?"},
                         {"role": "assistant", "content": f"Answer {token}."}]}


def _deep(levels: int) -> str:
    return '{"messages": ' + "[" * levels + "]" * levels + "}"


# JSONL chat defects: each returns the text of one line (bytes allowed)
def _chat_defects() -> list[Callable[[], str | bytes]]:
    good = _chat("bad")
    return [
        lambda: json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "asistant", "content": "a"}]}),
        lambda: json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant"}]}),
        lambda: json.dumps({"messages": [{"role": "user", "content": 7}, {"role": "assistant", "content": "a"}]}),
        lambda: json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]}),
        lambda: json.dumps({"messages": "hello"}),
        lambda: json.dumps({"messages": [{"role": "user", "content": "q"}]}),
        lambda: json.dumps({"messages": [{"content": "q"}, {"role": "assistant", "content": "a"}]}),
        lambda: json.dumps(good)[:25],  # truncated line
        lambda: '{"messages": [{"role": "user", "content": "caf\xe9"}, {"role": "assistant", "content": "a"}]}'
        .encode("latin-1"),
        lambda: '{"messages": [{"role": "user", "content": "q", "content": "r"}, {"role": "assistant", "content": "a"}]}',
        lambda: _deep(5000),
        lambda: _deep(100),
        lambda: '{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "a"}]}',
        lambda: json.dumps({"messages": [{"role": "user", "content": HUGE}, {"role": "assistant", "content": "a"}]}),
        lambda: json.dumps([1, 2]),
        lambda: "{}",
        lambda: json.dumps({"instruction": "mixed format", "output": "row"}),
        lambda: json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "",
                                                                              "tool_calls": [{"bogus": 1}]}]}),
        lambda: "\x00\x01garbage",
    ]


def _jsonl(corpus: Corpus, ids: _Ids, rng: random.Random, name: str, make_good: Callable[[str], Any],
           defects: list[Callable[[], str | bytes]], folder: Path, n: int, **spec: Any) -> None:
    lines: list[bytes] = []
    for _ in range(n):
        if rng.random() < 0.3:
            text = rng.choice(defects)()
            corpus.expected.append(Expected(name, line=len(lines) + 1))
        else:
            text = json.dumps(make_good(ids.good(corpus)))
        lines.append(text if isinstance(text, bytes) else text.encode("utf-8"))
    (folder / name).write_bytes(b"\n".join(lines) + b"\n")
    corpus.specs.append({"path": str(folder / name), "max_row_bytes": LIMIT, **spec})


def _sharegpt_defects() -> list[Callable[[], str | bytes]]:
    def conv(turns: list[dict[str, Any]]) -> str:
        return json.dumps({"conversations": turns})
    return [
        lambda: conv([{"from": "human", "value": "q"}, {"from": "gtp", "value": "a"}]),
        lambda: conv([{"from": "human", "value": "q"}, {"from": "gpt"}]),
        lambda: conv([{"from": "human", "value": 42}, {"from": "gpt", "value": "a"}]),
        lambda: conv([]),
        lambda: '{"conversations": [{"from": "human", "value": "\\udfff q"}, {"from": "gpt", "value": "a"}]}',
        lambda: '{"conversations": [{"from": "human", "from": "gpt", "value": "q"}, {"from": "gpt", "value": "a"}]}',
        lambda: '{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}',
    ]


def _preference_defects() -> list[Callable[[], str | bytes]]:
    return [
        lambda: json.dumps({"prompt": "p", "chosen": "same", "rejected": "same"}),
        lambda: json.dumps({"prompt": "p", "chosen": "yes"}),
        lambda: json.dumps({"prompt": "p", "chosen": 3, "rejected": "no"}),
        lambda: json.dumps({"prompt": "p", "chosen": "", "rejected": "no"}),
        lambda: '{"prompt": "p", "chosen": "a", "rejected": "b", "rejected": "c"}',
        lambda: '{"prompt": "p", "chosen": "a", "rejected": "b"'.encode() + b"\xff",
    ]


def _json_array(corpus: Corpus, ids: _Ids, rng: random.Random, folder: Path, name: str, n: int,
                cut: bool) -> None:
    """Pretty-printed alpaca array; defects inside elements, between them and at the end."""
    chunks: list[str] = []  # element texts (each starting at indentation 2)
    bad: list[int] = []  # indexes of bad elements
    missing_comma: set[int] = set()  # a good element written without the ',' before it
    kinds = ["tru", "byte", "dup", "deep", "surrogate", "type", "missing", "empty", "brace", "comma", "huge"]
    previous = "good"
    for i in range(n):
        kind = rng.choice(kinds) if rng.random() < 0.25 else "good"
        if kind == "comma" and (i == 0 or previous == "brace"):  # a lost '}' and ',' together are one defect
            kind = "good"
        if kind == "comma":
            missing_comma.add(i)
        if kind in ("good", "comma"):
            chunks.append(_alpaca_element(ids.good(corpus)))
        else:
            chunks.append(_bad_alpaca_element(kind))
            bad.append(i)
        previous = kind
    text, starts = "[\n", []
    for i, chunk in enumerate(chunks):
        if i:
            text += "\n" if i in missing_comma else ",\n"
        starts.append(text.count("\n") + 1)
        text += chunk
    if cut:  # the file ends inside one last, extra element
        text += ",\n"
        starts.append(text.count("\n") + 1)
        text += _alpaca_element("cut")[:30]
        bad.append(len(chunks))
    else:
        text += "\n]\n"
    (folder / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    corpus.expected += [Expected(name, line=starts[i]) for i in bad]
    corpus.expected += [Expected(name, line=starts[i]) for i in sorted(missing_comma)]
    corpus.specs.append({"path": str(folder / name), "max_row_bytes": LIMIT})


def _alpaca_element(token: str) -> str:
    body = json.dumps({"instruction": f"Do {token}", "input": "", "output": f"Done {token}."}, indent=2)
    return "\n".join("  " + line for line in body.splitlines())


def _bad_alpaca_element(kind: str) -> str:
    good = _alpaca_element("bad")
    return {
        "tru": good.replace('"Done bad."', "tru"),
        "byte": good.replace("Done bad", "Done b\udce9d"),
        "dup": good.replace('"input": ""', '"output": "x",\n    "input": ""'),
        "deep": good.replace('"Done bad."', "[" * 3000 + "]" * 3000),
        "surrogate": good.replace("Done bad", "Done \\ud83d bad"),
        "type": good.replace('"Done bad."', "42"),
        "missing": good.replace('"output": "Done bad."', '"outptu": "Done bad."'),
        "empty": good.replace('"Do bad"', '"  "'),
        "brace": good[: good.rindex("}")].rstrip(),
        "huge": good.replace("Done bad.", HUGE),
    }[kind]


def _csv(corpus: Corpus, ids: _Ids, rng: random.Random, folder: Path, name: str, n: int) -> None:
    lines = [b"instruction,output\n"]
    for _ in range(n):
        if rng.random() < 0.3:
            kind = rng.choice(["quote", "fields", "byte", "empty", "huge", "stray"])
            line = {
                "quote": '"unbalanced quote,answer\n', "fields": "a,b,c\n", "byte": "caf\xe9,x\n",
                "empty": 'question,""\n', "huge": f"q,{HUGE}\n", "stray": 'q,"closed" then text\n',
            }[kind]
            corpus.expected.append(Expected(name, line=sum(x.count(b"\n") for x in lines) + 1))
            lines.append(line.encode("latin-1"))
        else:
            token = ids.good(corpus)
            multi = rng.random() < 0.1
            text = f'"Do {token}\nover two lines, with ""quotes""",Done {token}\n' if multi else f"Do {token},Done {token}\n"
            lines.append(text.encode())
    (folder / name).write_bytes(b"".join(lines))
    corpus.specs.append({"path": str(folder / name), "type": "alpaca", "max_row_bytes": LIMIT})


def _parquet(corpus: Corpus, ids: _Ids, rng: random.Random, folder: Path, name: str, n: int) -> None:
    """Chat rows as list<struct<role, content>>; defects are values (a column has one type)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for i in range(n):
        user, reply, role = "Question?", "Answer.", "assistant"
        if rng.random() < 0.3:
            kind = rng.choice(["null", "empty", "huge", "role", "last_user"])
            reply = None if kind == "null" else " " if kind == "empty" else HUGE if kind == "huge" else reply
            role = {"role": "asistant", "last_user": "user"}.get(kind, role)
            corpus.expected.append(Expected(name, row=i + 1))
        else:
            token = ids.good(corpus)
            user, reply = f"Question {token}?", f"Answer {token}."
        rows.append({"messages": [{"role": "user", "content": user}, {"role": role, "content": reply}]})
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    table = pa.Table.from_pylist(rows, schema=pa.schema([("messages", pa.list_(message))]))
    pq.write_table(table, folder / name, row_group_size=50)
    corpus.specs.append({"path": str(folder / name), "max_row_bytes": LIMIT})


def _parquet_text(corpus: Corpus, ids: _Ids, rng: random.Random, folder: Path, name: str, n: int) -> None:
    """A text column holding invalid UTF-8 in some rows (Arrow stores the bytes; reading them fails)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = []
    for i in range(n):
        if rng.random() < 0.2:
            values.append(b"bad \xff\xfe bytes")
            corpus.expected.append(Expected(name, row=i + 1))
        else:
            values.append(f"Plain text document {ids.good(corpus)}.".encode())
    table = pa.table({"text": pa.array(values, type=pa.binary()).view(pa.string())})
    pq.write_table(table, folder / name, row_group_size=40)
    corpus.specs.append({"path": str(folder / name), "type": "text", "max_row_bytes": LIMIT})


def _txt(corpus: Corpus, ids: _Ids, rng: random.Random, folder: Path, name: str, n: int) -> None:
    lines: list[bytes] = []
    for _ in range(n):
        if rng.random() < 0.3:
            kind = rng.choice(["byte", "huge"])
            corpus.expected.append(Expected(name, line=len(lines) + 1))
            lines.append(b"bad \xff\xfe text" if kind == "byte" else HUGE.encode())
        else:
            lines.append(f"Plain text document {ids.good(corpus)}.".encode())
    (folder / name).write_bytes(b"\n".join(lines) + b"\n")
    corpus.specs.append({"path": str(folder / name), "type": "text", "max_row_bytes": LIMIT})


def _big(corpus: Corpus, ids: _Ids, folder: Path) -> None:
    """A real 10 MB row between two good ones, under the default max_row_bytes (8 MiB)."""
    rows = [json.dumps(_chat(ids.good(corpus))), json.dumps(_chat("x" * 10_000_000)), json.dumps(_chat(ids.good(corpus)))]
    (folder / "big.jsonl").write_text("\n".join(rows) + "\n")
    corpus.expected.append(Expected("big.jsonl", line=2))
    corpus.specs.append({"path": str(folder / "big.jsonl")})


def write_corpus(folder: Path, seed: int = 0, scale: int = 1) -> dict[str, Corpus]:
    """Every format, grouped by the training method that reads it (sft / dpo / cpt)."""
    rng, ids = random.Random(seed), _Ids()
    sft, dpo, cpt = Corpus(), Corpus(), Corpus()
    for k in range(2):
        _jsonl(sft, ids, rng, f"chat{k}.jsonl", _chat, _chat_defects(), folder, 500 * scale)
        _json_array(sft, ids, rng, folder, f"alpaca{k}.json", 300 * scale, cut=k == 1)
        _csv(sft, ids, rng, folder, f"alpaca{k}.csv", 300 * scale)
    _big(sft, ids, folder)
    share = lambda t: {"conversations": [{"from": "human", "value": f"Q {t}"}, {"from": "gpt", "value": f"A {t}"}]}
    _jsonl(sft, ids, rng, "sharegpt.jsonl", share, _sharegpt_defects(), folder, 400 * scale, type="sharegpt")
    _parquet(sft, ids, rng, folder, "chat.parquet", 400 * scale)
    pref = lambda t: {"prompt": f"P {t}", "chosen": f"Good {t}", "rejected": f"Bad {t}"}
    _jsonl(dpo, ids, rng, "preference.jsonl", pref, _preference_defects(), folder, 400 * scale)
    _txt(cpt, ids, rng, folder, "corpus.txt", 400 * scale)
    _parquet_text(cpt, ids, rng, folder, "corpus.parquet", 200 * scale)
    return {"sft": sft, "dpo": dpo, "cpt": cpt}
