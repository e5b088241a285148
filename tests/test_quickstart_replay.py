"""The pretrained profile's replay rows: the base model's own replies to general requests, none of
them a forgetting-probe item or a demo request, kept only when the reply ended on its own."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tiny import build_chatml_model
from tunesmith import infer
from tunesmith.data.records import Message
from tunesmith.quickstart import replay, tasks, workspace
from tunesmith.quickstart.base import recipe

PROBES = Path(__file__).parents[1] / "src" / "tunesmith" / "evaluate" / "probes" / "general.jsonl"


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def test_no_replay_request_is_a_probe_item_or_close_to_one():
    probes = [json.loads(line)["prompt"] for line in PROBES.read_text("utf-8").splitlines() if line.strip()]
    assert len(replay.prompts()) == len(set(replay.prompts())) >= 30
    for prompt in replay.prompts():
        for probe in probes:
            shared = _words(prompt) & _words(probe)
            assert len(shared) / len(_words(prompt) | _words(probe)) < 0.5, (prompt, probe)


def test_no_replay_request_is_a_demo_request():
    sizes = {t: tuple(n) for t, n in recipe()["finetune"]["profiles"]["pretrained"]["sizes"].items()}
    split = tasks.splits(sizes, recipe()["seed"])
    requests = {e.user.lower() for part in split.values() for rows in part.values() for e in rows}
    requests |= {e.user.lower() for rows in tasks.paraphrases().values() for e in rows}
    for prompt in replay.prompts():
        assert not any(prompt.lower() in r for r in requests), prompt


def test_only_the_pretrained_profile_replays():
    profiles = recipe()["finetune"]["profiles"]
    assert profiles["pretrained"]["replay"]["max_new_tokens"] > 0
    assert "replay" not in profiles["tiny"] and "replay" not in profiles["fast"]


@pytest.fixture()
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    build_chatml_model(tmp_path / "base")
    return tmp_path / "base"


def test_rows_are_the_base_replies_that_stopped(base: Path, tmp_path: Path):
    out = tmp_path / "general.jsonl"
    path, count = replay.write(out, base, "You are the plant assistant.", max_new_tokens=24)
    loaded = infer.load(base)
    expected = infer.generate_details(loaded.model, loaded.tokenizer, [[Message("user", p)] for p in replay.prompts()],
                                      eos_ids=loaded.eos_ids, system_prompt="You are the plant assistant.",
                                      max_new_tokens=24)
    kept = [(p, g.text) for p, g in zip(replay.prompts(), expected) if g.finish_reason == "stop" and g.text]
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert count == len(rows) == len(kept)
    assert [(r["messages"][0]["content"], r["messages"][1]["content"]) for r in rows] == kept
    assert len(kept) < len(replay.prompts())  # a random tiny model runs into the limit on some: left out


def test_a_second_run_reads_the_replies_from_the_generation_cache(base: Path, tmp_path: Path):
    first = replay.write(tmp_path / "a.jsonl", base, "sys", max_new_tokens=16)[0].read_text("utf-8")
    cache = tmp_path / "cache" / "generations.sqlite"
    assert cache.is_file()
    stamp = cache.stat().st_mtime_ns
    assert replay.write(tmp_path / "b.jsonl", base, "sys", max_new_tokens=16)[0].read_text("utf-8") == first
    assert cache.stat().st_mtime_ns == stamp  # nothing new to store


def test_add_replay_adds_a_training_file_only_for_a_profile_with_replay(base: Path, tmp_path: Path):
    files: dict[str, dict[str, Path]] = {"train": {}}
    assert workspace.add_replay(tmp_path, base, "fast", files) == 0 and files == {"train": {}}
    rows = workspace.add_replay(tmp_path, base, "pretrained", files)
    assert files["train"]["general"] == tmp_path / "data" / "train" / "general.jsonl"
    assert len(files["train"]["general"].read_text("utf-8").splitlines()) == rows


def test_the_run_facts_count_the_replay_rows(tmp_path: Path):
    from tunesmith.quickstart import summary

    base = {"architecture": "LlamaForCausalLM", "parameters": 1000, "num_hidden_layers": 2, "hidden_size": 8,
            "vocab_size": 100, "tokens": 10, "documents": 2, "steps": 1, "build_seconds": 1.0, "built_now": False}
    finetune = {"method": "sft + lora", "trainable_params": 10, "rows": 30, "epochs": 2.0, "steps": 8,
                "train_seconds": 1.0, "tokens_per_second": 100.0, "data_fingerprint": "ab"}
    facts = {"base": base, "total_seconds": 1.0, "machine": "x", "tunesmith": "0"}
    general = tmp_path / "data" / "train" / "general.jsonl"
    general.parent.mkdir(parents=True)
    general.write_text('{"messages": []}\n' * 3, "utf-8")
    assert summary._lines(general) == 3 and summary._lines(tmp_path / "missing.jsonl") == 0
    shown = dict(summary._facts({**facts, "finetune": {**finetune, "replay_rows": 3}}))
    assert shown["replay"].startswith("3 rows: the base model's own replies")
    assert "replay" not in dict(summary._facts({**facts, "finetune": {**finetune, "replay_rows": 0}}))
