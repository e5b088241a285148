"""Data at scale (issue 20): records kept on disk give exactly what records in memory give, through
ingestion, the audit and tokenization; shards and streamed cache writes change nothing."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny import build_tokenizer

from tunesmith import audit, tokenize
from tunesmith import data as data_stage
from tunesmith.audit.minhash import near_duplicates
from tunesmith.config import config_from_dict
from tunesmith.data.store import Chained, Picked, RowStore, on_disk
from tunesmith.tokenize.cache import ColumnWriter, MappedRows

CHATML = ["<|im_start|>", "<|im_end|>"]
WORDS = "alpha beta gamma delta river stone cloud paper green quick slow bright table window".split()


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) + str(rng.randrange(50)) for _ in range(n)).capitalize() + "."


def _planted(path: Path) -> int:
    """A chat dataset with exact and near duplicates, a bad line, a too-long row and fractional loss
    weights on some answers; returns the number of lines."""
    rng = random.Random(3)
    rows: list[Any] = []
    for k in range(320):
        answer = {"role": "assistant", "content": _sentence(rng, rng.randint(12, 30))}
        if k % 50 == 7:
            answer["loss_weight"] = 0.5
        rows.append({"messages": [{"role": "user", "content": _sentence(rng, rng.randint(6, 14))}, answer]})
    rows[40] = rows[10]  # exact duplicate
    near = json.loads(json.dumps(rows[20]))
    near["messages"][1]["content"] = near["messages"][1]["content"].replace(".", " indeed.")
    rows[60] = near  # near duplicate
    rows[80]["messages"][1]["content"] = " ".join([_sentence(rng, 30)] * 40)  # longer than sequence_len
    lines = [json.dumps(r) for r in rows]
    lines[100] = '{"messages": [}'  # invalid JSON: rejected with its reason, never silently lost
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def _config(tmp: Path, data: Path, out: str) -> Any:
    return config_from_dict({
        "base_model": str(tmp / "tok"), "chat_template": "chatml", "datasets": [{"path": str(data)}],
        "output_dir": str(tmp / out), "sequence_len": 512, "truncation": "drop", "on_bad_rows": "skip",
        "audit": {"fail_on": "never"},
    })


def _timeless(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if k != "seconds"}


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("scale")
    build_tokenizer(tmp / "tok", None, CHATML)
    data = tmp / "chat.jsonl"
    lines = _planted(data)
    out: dict[str, Any] = {"lines": lines, "tmp": tmp, "data": data}
    for name, spill in (("memory", 10**9), ("disk", 0)):
        cfg = _config(tmp, data, name)
        dataset = data_stage.run(cfg, spill_rows=spill)
        report = audit.run(cfg, data=dataset, tokenize=False)
        out[name] = (dataset, report, tokenize.run(cfg, dataset))
    return out


def test_records_on_disk_equal_records_in_memory(both: dict[str, Any]) -> None:
    memory, disk = both["memory"][0], both["disk"][0]
    assert isinstance(memory.train, list) and on_disk(disk.train) and on_disk(disk.eval)
    assert len(disk.train) == len(memory.train) and list(disk.train) == memory.train
    assert list(disk.eval) == memory.eval and memory.eval  # the default validation split, the same rows
    assert disk.train[-1] == memory.train[-1] and disk.train[5:8] == memory.train[5:8]
    assert disk.fingerprint == memory.fingerprint and [e.row for e in disk.errors] == [101]
    # no row silently lost: every line is a training row, a validation row or a rejected row
    assert len(disk.train) + len(disk.eval) + len(disk.errors) == both["lines"]


def test_audit_of_records_on_disk_finds_the_same(both: dict[str, Any]) -> None:
    memory, disk = both["memory"][1], both["disk"][1]
    assert [f.to_dict() for f in disk.findings] == [f.to_dict() for f in memory.findings]
    assert _timeless(disk.stats) == _timeless(memory.stats)
    found = {f.check: f for f in disk.findings}
    assert {"exact_duplicate", "near_duplicate", "schema"} <= set(found)


def test_streamed_tokenization_writes_the_same_rows(both: dict[str, Any]) -> None:
    memory, disk = both["memory"][2], both["disk"][2]
    assert disk.fingerprint == memory.fingerprint and disk.stats == memory.stats
    assert list(disk.train) == list(memory.train) and list(disk.eval) == list(memory.eval)
    assert disk.sources == memory.sources and disk.rejected == memory.rejected
    assert memory.stats["dropped"] == {"too_long": 1}  # the planted long row, listed with its reason
    assert any(r["reason"].startswith("too_long") for r in disk.rejected)
    assert "loss_weights" in memory.train[0]  # some answers weigh 0.5: every row carries weights
    records = len(both["disk"][0].train) + len(both["disk"][0].eval)
    assert len(disk.train) + len(disk.eval) + len(disk.rejected) == records  # none lost in tokenization
    for name in ("train", "eval"):
        files = sorted(p.name for p in disk.cache_dir.glob(f"{name}.*"))
        assert files == sorted(p.name for p in memory.cache_dir.glob(f"{name}.*"))
        for file in files:
            assert np.array_equal(np.load(disk.cache_dir / file), np.load(memory.cache_dir / file))


def test_column_writer_backfills_weights_across_flushes(tmp_path: Path) -> None:
    rows = [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}, {"input_ids": [4, 5], "labels": [-100, 5]},
            {"input_ids": [6, 7], "labels": [-100, 7], "loss_weights": [0.0, 0.5]},
            {"input_ids": [8], "labels": [8]}]
    writer = ColumnWriter(tmp_path, "train", flush=2)  # two rows already on disk when the weights appear
    for row in rows:
        writer.append(row)
    writer.finish()
    np.save(tmp_path / "eval.__count.npy", np.array([0]))
    got = MappedRows(tmp_path, "train")
    defaults = [[0.0, 1.0, 1.0], [0.0, 1.0], [0.0, 0.5], [1.0]]
    assert list(got) == [{**row, "loss_weights": w} for row, w in zip(rows, defaults)]
    assert got.trained == 5 and got.lengths("input_ids").tolist() == [3, 2, 2, 1]


def test_near_duplicates_are_the_same_in_any_shard_size() -> None:
    rng = random.Random(0)
    texts = [_sentence(rng, rng.randint(20, 40)) for _ in range(400)]
    texts += [texts[k].replace(".", " too.") for k in range(0, 400, 37)] + [texts[5].upper(), "", "one"]
    whole = near_duplicates(texts, 0.8)
    assert whole == near_duplicates(texts, 0.8, shard=7) == near_duplicates(RowStore(texts), 0.8, shard=64)
    planted = {(k, 400 + n) for n, k in enumerate(range(0, 400, 37))} | {(5, len(texts) - 3)}
    assert planted <= {(i, j) for i, j, _ in whole}


def test_views_index_slice_and_compare_like_lists() -> None:
    store = RowStore(["a", "b", "c", "d"])
    picked, chained = Picked(store, [3, 1]), Chained([store, ["e"]])
    assert picked == ["d", "b"] and picked[-1] == "b" and list(chained) == ["a", "b", "c", "d", "e"]
    assert chained[4] == "e" and chained[1:3] == ["b", "c"] and ["a", "b", "c", "d"] == store
    with pytest.raises(IndexError):
        store[4]


def _templates() -> list[Path]:
    from conftest import SHARED

    folder = SHARED / "fixtures" / "chat_templates" / "chat_templates"
    return sorted(folder.glob("*.jinja")) if folder.is_dir() else []


@pytest.mark.skipif(not _templates(), reason="../shared chat templates are absent")
@pytest.mark.parametrize("style", ["byte_level", "sentencepiece"])
def test_batched_chat_encoding_equals_row_by_row_on_every_real_template(tmp_path: Path, style: str) -> None:
    """``tokenize_chat_split`` renders and tokenizes rows in batches (``rows.prepare``); each row must
    equal ``encode_chat`` on that row alone, for every real template (multi-turn, system prompts,
    rows the template rejects)."""
    import re

    from tunesmith.data.records import Message, Record, Source
    from tunesmith.tokenize import encode_chat
    from tunesmith.tokenize.rows import tokenize_chat_split

    talks = [
        (Message("user", "What is the capital of France?"), Message("assistant", "  Paris.\n")),
        (Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello there"),
         Message("user", "And?"), Message("assistant", "Nothing more.", weight=0.5)),
        (Message("user", "a"), Message("user", "b"), Message("assistant", "c")),  # some templates refuse
    ]
    records = [Record("sft", Source("d.jsonl", k, k), "chat", talk) for k, talk in enumerate(talks * 2)]
    checked = 0
    for path in _templates():
        text = path.read_text("utf-8")
        specials = sorted(set(re.findall(r"<\|[a-z_]+\|>|<[a-z]+_of_turn>", text)))
        tok = build_tokenizer(tmp_path / path.stem, text, specials, style=style)
        cfg = config_from_dict({"base_model": str(tmp_path / path.stem), "datasets": ["d.jsonl"],
                                "on_bad_rows": "skip", "sequence_len": 4096})
        split = tokenize_chat_split(records, tok, cfg)
        expected = []
        for r in records:
            try:
                enc = encode_chat(r.messages, tok, closing=None)
            except Exception:
                continue
            if any(x != -100 for x in enc.labels):
                expected.append((enc.input_ids, enc.labels))
        assert [(row["input_ids"], row["labels"]) for row in split.rows] == expected, path.stem
        assert len(split.rows) + sum(split.dropped.values()) == len(records)
        checked += bool(split.rows)
    assert checked >= 10


def test_packing_streams_the_same_packed_rows_from_the_cache(both: dict[str, Any],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``sample_packing``: packed rows are written to their own cache entry one at a time (flushed every
    few rows here) and read back memory-mapped; they equal packing every row in memory, for records in
    memory and on disk, and no packed row crosses a sample boundary."""
    import importlib

    tokenize_run = importlib.import_module("tunesmith.tokenize.run")
    from tunesmith.tokenize.pack import best_fit_decreasing, pack

    monkeypatch.setattr(tokenize_run, "_PACKED_FLUSH_TOKENS", 1500)  # two 512-token rows per write
    packed = {}
    for name in ("memory", "disk"):
        cfg = _config(both["tmp"], both["data"], name).model_copy(update={"sample_packing": True})
        packed[name] = tokenize.run(cfg, both[name][0])
    memory, disk = packed["memory"], packed["disk"]
    assert isinstance(disk.train, MappedRows) and disk.stats == memory.stats and disk.stats["sample_packing"]
    samples = list(memory.samples)
    lengths = [len(r["input_ids"]) for r in samples]
    bins = best_fit_decreasing(lengths, 512)
    expected = pack(samples, bins)  # the old in-memory packing
    assert list(disk.train) == list(memory.train) == expected and len(expected) < len(samples) / 2
    where = disk.cache_dir.with_name(disk.cache_dir.name + "-packed")
    files = sorted(p.name for p in where.glob("train.*"))
    assert "train.position_ids.npy" in files
    for file in files:
        other = memory.cache_dir.with_name(memory.cache_dir.name + "-packed") / file
        assert np.array_equal(np.load(where / file), np.load(other))
    for row, members in zip(disk.train, bins):  # planted check: every boundary restarts, nothing crosses
        starts = np.cumsum([0] + [lengths[k] for k in members[:-1]]).tolist()
        assert [k for k, p in enumerate(row["position_ids"]) if p == 0] == starts
        assert all(row["labels"][s] == -100 for s in starts) and len(row["input_ids"]) <= 512
        assert row["input_ids"] == [t for k in members for t in samples[k]["input_ids"]]
    assert sorted(k for b in bins for k in b) == list(range(len(samples)))  # every sample packed once
    again = tokenize.run(cfg, both["disk"][0])  # a cache hit reads the packed entry back
    assert again.cache_hit and list(again.train) == expected


def _whole_stream_split(texts: list[str], tok: Any, length: int, stride: int, min_window: int) -> dict[str, Any]:
    """What ``method: cpt`` gave before it streamed: every document in one list, then every window."""
    from tunesmith.tokenize.cpt import windows

    stream: list[int] = []
    for ids in tok([t for t in texts if t.strip()], add_special_tokens=False)["input_ids"]:
        stream.extend([*ids, tok.eos_token_id])
    cut = windows(stream, length, stride, min_window)
    step = length - stride
    covered = (len(cut) - 1) * step + len(cut[-1]) if cut else 0
    return {"rows": [{"input_ids": w, "labels": w} for w in cut], "dropped": len(stream) - covered,
            "sources": [f"window {k} (tokens {k * step}..{k * step + len(w)})" for k, w in enumerate(cut)]}


@pytest.mark.parametrize(("length", "stride", "min_window"), [(16, 0, 1), (16, 5, 9), (7, 6, 7), (64, 0, 200)])
def test_cpt_windows_stream_the_same_as_the_whole_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         length: int, stride: int, min_window: int) -> None:
    """``method: cpt`` tokenizes documents a few at a time (3 here) and cuts windows as they fill: the
    same windows, source labels, dropped tokens and empty-document rows as one stream cut at the end."""
    from tunesmith.data.records import Record, Source
    from tunesmith.tokenize import cpt

    monkeypatch.setattr(cpt, "_DOCS", 3)
    tok = build_tokenizer(tmp_path / "tok", None, CHATML)
    rng = random.Random(length + stride)
    texts = [_sentence(rng, rng.choice([1, 2, 5, 30, 90])) for _ in range(23)]
    texts[4] = texts[11] = "  "  # empty documents: counted drops, in record order
    records = [Record("text", Source("d.jsonl", k, k + 1), "text", text=t) for k, t in enumerate(texts)]
    cfg = config_from_dict({"base_model": str(tmp_path / "tok"), "method": "cpt", "datasets": ["d.jsonl"],
                            "sequence_len": length, "stride": stride, "min_window": min_window,
                            "on_bad_rows": "skip"})
    split = cpt.tokenize_text_split(records, tok, cfg)
    whole = _whole_stream_split(texts, tok, length, stride, min_window)
    assert split.rows == whole["rows"] and split.sources == whole["sources"] and len(split.rows) > 3
    assert split.dropped_tokens == whole["dropped"] and split.documents == 21
    assert [r["row"] for r in split.rejected] == [4, 11]
    assert cpt.tokenize_text_split(RowStore(records), tok, cfg).rows == whole["rows"]  # records on disk
