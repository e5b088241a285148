"""Conformance: the public demo datasets in ../shared ingest into the right records and counts.

Skipped when ../shared is absent; the files are read in place, never copied.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import shared_path

from tunesmith.config import DatasetSpec, config_from_dict
from tunesmith.data import Record, ingest


def load(name: str, **spec: Any) -> tuple[list[Record], str]:
    path = shared_path("fixtures", "datasets", name)
    result = ingest([DatasetSpec(path=str(path), **spec)])
    assert result.errors == []
    return result.records, result.formats[str(path)]


@pytest.mark.parametrize(
    ("name", "fmt", "kind", "count"),
    [
        ("alpaca_en_demo.json", "alpaca", "sft", 999),
        ("identity.json", "alpaca", "sft", 91),
        ("dpo_en_demo.json", "preference", "preference", 300),
        ("kto_en_demo.json", "kto", "kto", 300),
        ("glaive_toolcall_en_demo.json", "sharegpt", "sft", 300),
        ("v1_sft_demo.jsonl", "chat", "sft", 500),
        ("v1_dpo_demo.jsonl", "preference", "preference", 10),
        ("reason_tool_use_demo_50.jsonl", "chat", "sft", 50),
        ("c4_demo.jsonl", "text", "text", 300),
        ("wiki_demo.txt", "text", "text", 30),
    ],
)
def test_demo_dataset_counts(name: str, fmt: str, kind: str, count: int) -> None:
    records, detected = load(name)
    assert detected == fmt
    assert Counter(r.kind for r in records) == {kind: count}


def test_kto_labels_balanced() -> None:
    records, _ = load("kto_en_demo.json")
    assert Counter(r.label for r in records) == {True: 150, False: 150}
    assert all(r.messages[-1].role == "assistant" for r in records)


def test_dpo_pairs_differ_and_prompt_ends_with_user() -> None:
    records, _ = load("dpo_en_demo.json")
    for r in records:
        assert r.messages[-1].role == "user"
        assert [m.role for m in r.chosen] == ["assistant"] and r.chosen != r.rejected


def test_glaive_tools_and_function_calls() -> None:
    records, _ = load("glaive_toolcall_en_demo.json")
    with_tools = [r for r in records if r.tools]
    calls = [c for r in records for m in r.messages for c in m.tool_calls]
    assert len(with_tools) == 191 and len(calls) == 211
    assert all(t["type"] == "function" and t["function"]["name"] for r in with_tools for t in r.tools)
    assert all(isinstance(c.arguments, dict) for c in calls)
    first = records[0]
    call_turn = next(i for i, m in enumerate(first.messages) if m.tool_calls)
    assert first.messages[call_turn].role == "assistant" and first.messages[call_turn + 1].role == "tool"


def test_v1_sft_content_parts_and_loss_weights() -> None:
    records, _ = load("v1_sft_demo.jsonl")
    weights = Counter((m.role, m.weight) for r in records for m in r.messages)
    assert weights == {("user", 0.0): 500, ("assistant", 1.0): 500}
    assert records[0].messages[0].content == "hi"


def test_v1_dpo_prompt_is_common_prefix() -> None:
    records, _ = load("v1_dpo_demo.jsonl")
    for r in records:
        assert [m.role for m in r.messages] == ["system", "user"]
        assert len(r.chosen) == len(r.rejected) == 1 and r.chosen[0].content != r.rejected[0].content
    assert records[0].chosen[0].content.startswith("Abdulah Hasanagic is the proud owner")


def test_reason_tool_use_parts() -> None:
    records, _ = load("reason_tool_use_demo_50.jsonl")
    turns = [m for r in records for m in r.messages]
    assert Counter(m.role for m in turns) == {"system": 50, "user": 70, "assistant": 112, "tool": 42}
    assistant = [m for m in turns if m.role == "assistant"]
    assert all(m.reasoning for m in assistant)
    assert sum(len(m.tool_calls) for m in assistant) == 41 + 9 * 2 + 3 * 3
    assert sum(1 for r in records if r.tools) == 48  # two rows have "tools": "[]"
    assert all(t["type"] == "function" and t["function"]["name"] for r in records for t in r.tools)


def test_llamafactory_dataset_names(tmp_path: Path) -> None:
    root = shared_path("fixtures", "datasets")
    cfg = config_from_dict({"base_model": "tiny", "dataset": "alpaca_en_demo,dpo_en_demo", "dataset_dir": str(root)})
    result = ingest(list(cfg.datasets))
    assert list(result.formats.values()) == ["alpaca", "preference"]
    assert Counter(r.kind for r in result.records) == {"sft": 999, "preference": 300}


@pytest.mark.parametrize(
    ("name", "fmt", "count"),
    [
        ("kto_en_demo", "kto", 300),
        ("glaive_toolcall_en_demo", "sharegpt", 300),
        ("identity", "alpaca", 91),
        ("c4_demo", "text", 300),
        ("wiki_demo", "text", 30),
    ],
)
def test_llamafactory_mapping_per_entry(name: str, fmt: str, count: int) -> None:
    root = shared_path("fixtures", "datasets")
    cfg = config_from_dict({"base_model": "tiny", "dataset": name, "dataset_dir": str(root)})
    result = ingest(list(cfg.datasets))
    assert list(result.formats.values()) == [fmt] and len(result.records) == count
