"""`tunesmith advise`: every rule of the decision table, each outcome, the starter config, bad answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tunesmith.config import load_config
from tunesmith.plan.advise import AdviseError, check_answer, decide, questions, tables

from conftest import run_cli

BASE = {"labelled_examples": "1k_to_10k", "knowledge_changes": "rarely", "citations": "no",
        "latency_cost": "relaxed", "output_format": "loose"}


def _advice(**over):
    return decide({**BASE, **over})


@pytest.mark.parametrize("answers,outcome,reason", [
    ({"labelled_examples": "none"}, "prompting", "fewer than 100 labelled examples"),
    ({"labelled_examples": "under_100", "output_format": "strict"}, "prompting", "fewer than 100"),
    ({"labelled_examples": "under_100", "knowledge_changes": "weekly"}, "rag", "the knowledge changes weekly"),
    ({"labelled_examples": "100_to_1k", "citations": "yes"}, "rag", "answers must cite sources"),
    ({"labelled_examples": "100_to_1k"}, "prompting", "100-1,000 examples, a loose format"),
    ({"labelled_examples": "100_to_1k", "output_format": "strict"}, "fine-tuning", "a strict output format"),
    ({"labelled_examples": "100_to_1k", "latency_cost": "strict"}, "fine-tuning", "strict latency/cost"),
    ({"labelled_examples": "over_10k"}, "fine-tuning", "1,000+ labelled examples"),
    ({"labelled_examples": "1k_to_10k", "knowledge_changes": "monthly"}, "ft+rag", "the knowledge changes monthly"),
    ({"labelled_examples": "over_10k", "citations": "yes"}, "ft+rag", "answers must cite sources"),
])
def test_each_rule_and_outcome(answers, outcome, reason) -> None:
    advice = _advice(**answers)
    assert advice.outcome == outcome
    assert any(r.startswith(reason) for r in advice.reasons), advice.reasons


def test_every_rule_and_outcome_is_reachable() -> None:
    import itertools

    decision = questions(training=False)
    seen_outcomes, seen_reasons = set(), set()
    for combo in itertools.product(*[list(q["choices"]) for q in decision]):
        advice = decide(dict(zip([q["key"] for q in decision], map(str, combo))))
        seen_outcomes.add(advice.outcome)
        seen_reasons.update(r.split(":")[0][:30] for r in advice.reasons)
    assert seen_outcomes == set(tables()["outcomes"])
    for rule in tables()["rules"]:
        assert rule["reason"].split(":")[0][:30].split("{")[0] in " ".join(seen_reasons), rule["reason"]


def test_answers_are_checked_with_a_suggestion() -> None:
    q = next(q for q in questions() if q["key"] == "latency_cost")
    assert check_answer(q, "strict", "") == "strict"
    with pytest.raises(AdviseError, match=r"answers.yaml: latency_cost: 'strct' is not one of relaxed, strict \(did you mean 'strict'\?\)"):
        check_answer(q, "strct", "answers.yaml: ")
    with pytest.raises(AdviseError, match="latency_cost: missing"):
        check_answer(q, None, "")
    citations = next(q for q in questions() if q["key"] == "citations")
    assert check_answer(citations, False, "") == "no" and check_answer(citations, True, "") == "yes"  # YAML booleans


def _answers(tmp: Path, **over) -> Path:
    path = tmp / "answers.yaml"
    path.write_text(yaml.safe_dump({**BASE, "data_kind": "chat", "data_path": "data/train.jsonl", **over}))
    return path


def test_non_interactive_writes_a_starter_config_that_loads(tmp_path) -> None:
    out_cfg = tmp_path / "starter.yaml"
    out = run_cli("advise", "--answers", str(_answers(tmp_path, data_kind="preference")), "--out", str(out_cfg),
                  "--gpu", "l4", "--json")
    assert out.returncode == 0, out.stderr
    advice = json.loads(out.stdout)
    assert advice["outcome"] == "fine-tuning"
    cfg = load_config(out_cfg)
    assert cfg.method == "dpo" and cfg.adapter == "lora" and cfg.datasets[0].type == "preference"
    answers = str(_answers(tmp_path, data_kind="preference"))
    again = run_cli("advise", "--answers", answers, "--out", str(out_cfg), "--json")  # replaced it silently
    assert again.returncode == 1 and f"--out {out_cfg}: already exists" in again.stderr
    missing = run_cli("advise", "--answers", answers, "--out", str(tmp_path / "nope" / "s.yaml"), "--json")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr  # was an internal error (exit 70)
    assert f"the folder {tmp_path / 'nope'} does not exist" in missing.stderr
    assert cfg.hardware.gpu == "L4" and cfg.base_model == "Qwen/Qwen2.5-0.5B-Instruct"
    assert run_cli("config", str(out_cfg)).returncode == 0


def test_big_data_gets_full_fine_tuning_and_rag_data_its_type(tmp_path) -> None:
    out = run_cli("advise", "--answers", str(_answers(tmp_path, labelled_examples="over_10k", citations="yes",
                                                      data_kind="rag")), "--json")
    advice = json.loads(out.stdout)
    assert advice["outcome"] == "ft+rag"
    assert advice["starter_config"]["adapter"] == "lora" and advice["starter_config"]["datasets"][0]["type"] == "rag"


def test_no_training_means_no_starter_config(tmp_path) -> None:
    out = run_cli("advise", "--answers", str(_answers(tmp_path, labelled_examples="none")))
    assert out.returncode == 0 and "recommendation: prompting" in out.stdout and "starter config" not in out.stdout


def test_bad_answers_files(tmp_path) -> None:
    out = run_cli("advise", "--answers", str(_answers(tmp_path, citation="yes")))
    assert out.returncode == 1 and "citation: unknown question (did you mean 'citations'?)" in out.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**BASE, "latency_cost": "fast"}))
    out = run_cli("advise", "--answers", str(bad))
    assert out.returncode == 1 and "latency_cost: 'fast' is not one of relaxed, strict" in out.stderr
    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump({k: v for k, v in BASE.items() if k != "citations"}))
    out = run_cli("advise", "--answers", str(missing))
    assert out.returncode == 1 and "citations: missing (one of no, yes)" in out.stderr


def test_interactive_prompts(tmp_path) -> None:
    import subprocess

    from conftest import TUNESMITH

    typed = "\n".join(["lots", "1k_to_10k", "rarely", "no", "strict", "strict", "chat", "", ""]) + "\n"
    proc = subprocess.run([TUNESMITH, "advise", "--out", str(tmp_path / "s.yaml")], input=typed, text=True,
                          capture_output=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "How many labelled examples" in proc.stdout and "recommendation: fine-tuning" in proc.stdout
    assert "labelled_examples: 'lots' is not one of" in proc.stdout  # asked again
    cfg = load_config(tmp_path / "s.yaml")
    assert cfg.method == "sft" and cfg.datasets[0].path == "data/train.jsonl"
