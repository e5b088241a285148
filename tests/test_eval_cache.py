"""The generation cache (``eval_cache: true``): an unchanged model's greedy replies are reused,
and anything that could change a reply (the weights, the prompt, the length limit) misses."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from tiny import build_chatml_model
from tunesmith import evaluate, infer
from tunesmith.config import config_from_dict
from tunesmith.data.records import Message
from tunesmith.infer.cache import GenerationCache


def _conv(user: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    build_chatml_model(tmp_path / "base")
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(_conv(f"fact {i} about birds", f"fact {i}")) + "\n"
                                                  for i in range(6)))
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(_conv(f"what is the capital of country {i}", "paris")) + "\n"
                                               for i in range(5)))
    probe_items = [{"id": f"p{i}", "category": "arithmetic", "prompt": f"What is {i} + 1?",
                    "check": {"type": "number", "value": i + 1}} for i in range(3)]
    (tmp_path / "probes.jsonl").write_text("".join(json.dumps(p) + "\n" for p in probe_items))
    return tmp_path


def _config(root: Path, **extra: object):
    return config_from_dict({
        "base_model": str(root / "base"), "datasets": [{"path": str(root / "train.jsonl")}],
        "output_dir": str(root / "run"), "eval_batch_size": 2, "eval_cache": True,
        "probes": {"max_new_tokens": 3, "path": str(root / "probes.jsonl")},
        "eval_tasks": [{"name": "qa", "path": str(root / "qa.jsonl"), "scorer": "token_f1", "max_new_tokens": 5}],
        **extra,
    })


def _replies(result) -> list[str]:
    return result.tasks["qa"].outputs + [r.reply for r in result.probes.rows]


def test_second_evaluation_reuses_every_reply_and_reads_them_from_the_cache(project: Path) -> None:
    config = _config(project)
    first = evaluate.run(config, str(project / "base"), name="base", out_dir=project / "e1")
    assert first.cached_replies == 0
    db = project / "cache" / "generations.sqlite"
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM generations_v1").fetchone()[0] == 5 + 3
        con.execute("UPDATE generations_v1 SET text = 'from the cache'")  # proves the next run reads, not regenerates
    second = evaluate.run(config, str(project / "base"), name="base", out_dir=project / "e2")
    assert second.cached_replies == 8
    assert _replies(second) == ["from the cache"] * 8
    saved = json.loads((project / "e2" / "eval_base.json").read_text())
    assert saved["cached_replies"] == 8 and saved["tokens_per_s"] == 0  # not a generation speed


def test_cached_replies_equal_fresh_ones(project: Path) -> None:
    config = _config(project)
    fresh = evaluate.run(_config(project, eval_cache=False), str(project / "base"), name="a", out_dir=project / "e0")
    assert fresh.cached_replies is None and not (project / "cache" / "generations.sqlite").exists()
    evaluate.run(config, str(project / "base"), name="b", out_dir=project / "e1")
    again = evaluate.run(config, str(project / "base"), name="c", out_dir=project / "e2")
    assert again.cached_replies == 8 and _replies(again) == _replies(fresh)
    assert again.tasks["qa"].score.metrics == fresh.tasks["qa"].score.metrics


def test_changed_weights_prompt_or_length_miss(project: Path) -> None:
    loaded = infer.load(project / "base")
    key = loaded.fingerprint()
    assert key is not None
    cache = GenerationCache(project / "g.sqlite", key)
    convs = [[Message(role="user", content=f"question {i}")] for i in range(3)]
    first = infer.generate_details(loaded.model, loaded.tokenizer, convs, eos_ids=loaded.eos_ids,
                                   max_new_tokens=4, cache=cache)
    infer.generate_details(loaded.model, loaded.tokenizer, convs, eos_ids=loaded.eos_ids, max_new_tokens=4, cache=cache)
    assert cache.hits == 3
    infer.generate_details(loaded.model, loaded.tokenizer, convs, eos_ids=loaded.eos_ids, max_new_tokens=5, cache=cache)
    infer.generate_details(loaded.model, loaded.tokenizer, convs, eos_ids=loaded.eos_ids, system_prompt="Be brief.",
                           max_new_tokens=4, cache=cache)
    assert cache.hits == 3  # another limit, another prompt: regenerated
    weights = project / "base" / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000))  # re-saved in place
    assert infer.load(project / "base").fingerprint() != key
    assert [g.text for g in first] == [g.text for g in infer.generate_details(
        loaded.model, loaded.tokenizer, convs, eos_ids=loaded.eos_ids, max_new_tokens=4)]


def test_a_hub_model_has_no_fingerprint(project: Path) -> None:
    loaded = infer.load(project / "base")
    assert infer.Loaded(loaded.path, loaded.model, loaded.tokenizer, loaded.eos_ids, "full").fingerprint() is None
