"""Second review of data loading: wide encodings, exact mix totals, max_samples, JSON answers, tool results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tunesmith.config import DatasetSpec
from tunesmith.data import DataSourceError, ingest
from tunesmith.data.mix import targets
from tunesmith.errors import DataError


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return path


_CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}


@pytest.mark.parametrize(
    ("name", "text", "encoding", "said"),
    [
        ("rows.jsonl", json.dumps(_CHAT) + "\n" + json.dumps(_CHAT) + "\n", "utf-16", "UTF-16LE (byte order mark FF FE)"),
        ("rows.json", json.dumps([_CHAT, _CHAT]), "utf-16-be", "UTF-16BE"),
        ("rows.csv", "instruction,output\nhi,yo\n", "utf-16", "UTF-16LE"),
        ("rows.txt", "first document\nsecond document\n", "utf-16", "UTF-16LE"),
        ("rows.jsonl", json.dumps(_CHAT) + "\n", "utf-32", "UTF-32LE (byte order mark FF FE 00 00)"),
    ],
)
def test_utf16_and_utf32_files_are_one_clear_error(tmp_path: Path, name: str, text: str, encoding: str,
                                                   said: str) -> None:
    """Read as UTF-8 these were one 'invalid JSON' per line, CSV headers of mojibake, or (.txt) training
    rows full of NUL bytes; now one error names the file and its encoding."""
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    with pytest.raises(DataSourceError) as caught:
        ingest([DatasetSpec(path=str(path))], method="cpt" if name.endswith(".txt") else "sft", on_bad_rows="skip")
    message = str(caught.value)
    assert message.startswith(f"{path}: is {said}") and "save it as UTF-8" in message


def test_latin1_csv_is_still_a_row_error(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes("instruction,output\nhi,yo\nh\xe9,ok\n".encode("latin-1"))
    result = ingest([DatasetSpec(path=str(path))], on_bad_rows="skip")
    assert len(result.records) == 1 and [(e.row, e.line) for e in result.errors] == [(2, 3)]


@pytest.mark.parametrize(
    ("weights", "counts", "temperature"),
    [([2, None, None], [5, 5, 5], 1.0), ([None, None, None], [4, 4, 2], 1000.0), ([1, 3, 7], [11, 13, 17], 2.0)],
)
def test_mix_shares_add_up_to_the_rows_read(weights: list[float | None], counts: list[int], temperature: float) -> None:
    """The shares are rounded by largest remainder: rounding each alone gave 16 rows of 15, or 9 of 10."""
    specs = [DatasetSpec(path=f"d{i}.jsonl", weight=w) for i, w in enumerate(weights)]
    wanted = targets(specs, counts, temperature)
    assert sum(wanted) == sum(counts)
    mass = [(n * (w or 1.0)) ** (1 / temperature) for n, w in zip(counts, weights)]
    exact = [sum(counts) * m / sum(mass) for m in mass]
    assert all(abs(t - e) < 1 for t, e in zip(wanted, exact))


def test_max_samples_counts_rows_not_problems_between_them(tmp_path: Path) -> None:
    """A missing ',' between two array elements is reported but is no row: max_samples 2 reads two rows."""
    path = tmp_path / "rows.json"
    path.write_text('[{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"},\n'
                    '{"instruction": "e", "output": "f"}]', "utf-8")
    result = ingest([DatasetSpec(path=str(path), max_samples=2)], on_bad_rows="skip")
    assert [r.source.row for r in result.records] == [1, 2]
    assert [(e.row, e.line) for e in result.errors] == [(None, 2)]


@pytest.mark.parametrize(
    ("row", "method", "side"),
    [
        ({"prompt": "Extract the person: Bob is an engineer.", "completion": '{"name": "Bob", "role": "engineer"}'},
         "sft", "completion"),
        ({"prompt": "Flight?", "completion": '{"from": "NYC", "to": "LA"}', "label": True}, "kto", "completion"),
        ({"prompt": "Extract: Bob is an admin.", "chosen": '{"name": "Bob", "role": "admin"}',
          "rejected": '{"name": "Bob", "role": "user"}'}, "dpo", "chosen"),
    ],
)
def test_a_json_answer_with_a_role_or_from_key_stays_text(tmp_path: Path, row: dict[str, Any], method: str,
                                                           side: str) -> None:
    """Structured-output answers holding a ``role`` or ``from`` key were read as messages and rejected
    (``completion.role 'engineer' is not one of ...``)."""
    result = ingest([DatasetSpec(path=str(_jsonl(tmp_path / "rows.jsonl", [row])))], method=method)
    record = result.records[0]
    last = record.chosen[-1] if side == "chosen" else record.messages[-1]
    assert (last.role, last.content) == ("assistant", row[side])


def test_json_messages_in_a_string_are_still_messages(tmp_path: Path) -> None:
    row = {"prompt": json.dumps([{"role": "system", "content": "S"}, {"role": "user", "content": "q"}]),
           "completion": json.dumps({"role": "assistant", "content": "a"})}
    record = ingest([DatasetSpec(path=str(_jsonl(tmp_path / "rows.jsonl", [row])))]).records[0]
    assert [(m.role, m.content) for m in record.messages] == [("system", "S"), ("user", "q"), ("assistant", "a")]


def _tool_row(first: str, second: str) -> dict[str, Any]:
    calls = [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}},
             {"id": "c2", "type": "function", "function": {"name": "clock", "arguments": "{}"}}]
    return {"messages": [{"role": "user", "content": "Weather and time in Oslo?"},
                         {"role": "assistant", "content": None, "tool_calls": calls},
                         {"role": "tool", "tool_call_id": first, "content": f"result of {first}"},
                         {"role": "tool", "tool_call_id": second, "content": f"result of {second}"},
                         {"role": "assistant", "content": "Rain, 12:00."}]}


def test_tool_results_follow_the_order_of_their_calls(tmp_path: Path) -> None:
    """Records keep no call ids and templates pair results with calls by position: results written in
    another order than the calls (c2 before c1) were attached to the wrong call."""
    record = ingest([DatasetSpec(path=str(_jsonl(tmp_path / "rows.jsonl", [_tool_row("c2", "c1")])))]).records[0]
    calls = [c.name for c in record.messages[1].tool_calls]
    results = [m.content for m in record.messages[2:4]]
    assert calls == ["weather", "clock"] and results == ["result of c1", "result of c2"]


def test_a_tool_result_naming_no_call_is_an_error(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "rows.jsonl", [_tool_row("c2", "c9")])
    with pytest.raises(DataError) as caught:
        ingest([DatasetSpec(path=str(path))])
    (error,) = caught.value.errors
    assert (error.row, error.line, error.field) == (1, 1, "messages[3].tool_call_id")
    assert "'c9' is not the id of a call of messages[1] (its calls: c1, c2)" in error.message
