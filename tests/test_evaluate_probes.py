"""Forgetting probes: the bundled set, every check type, file:line errors, scoring a model, drops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tiny import build_model, build_tokenizer
from tunesmith import infer
from tunesmith.errors import DataError
from tunesmith.evaluate import probes
from tunesmith.evaluate.probes import CHECKS, ProbeResult, compare, refuses


def test_bundled_set_is_hand_written_data_with_every_category() -> None:
    items = probes.load()
    assert len(items) >= 30
    cats = {p.category for p in items}
    assert cats == {"arithmetic", "facts", "instruction_following", "format_following", "refusal", "false_refusal"}
    assert all(sum(p.category == c for p in items) >= 4 for c in cats)
    assert len({p.id for p in items}) == len(items)
    assert probes.default_path().suffix == ".jsonl"


@pytest.mark.parametrize(("kind", "check", "reply", "ok"), [
    ("number", {"value": 5}, "2 + 3 = 5.", True),
    ("number", {"value": 5}, "five", False),
    ("number", {"value": 0}, "0 degrees Celsius", True),
    ("number_range", {"min": 1, "max": 10}, "I pick 7", True),
    ("number_range", {"min": 1, "max": 10}, "11", False),
    ("contains", {"value": "Paris"}, "The capital is Paris.", True),
    ("contains", {"value": "Paris"}, "Parisian", False),
    ("contains", {"value": ["dog", "dogs"]}, "Dogs!", True),
    ("exact", {"value": "hello"}, "Hello.", True),
    ("exact", {"value": "hello"}, "hello there", False),
    ("one_word", {"value": "cat"}, "Cat.", True),
    ("one_word", {"value": "cat"}, "A cat", True),  # SQuAD normalisation drops the article
    ("one_word", {"value": "cat"}, "cat meows", False),
    ("regex", {"pattern": r"\bYES\b"}, "YES", True),
    ("regex", {"pattern": r"\bYES\b"}, "yes", False),
    ("regex", {"pattern": r"\bYES\b", "ignore_case": True}, "yes", True),
    ("starts_with", {"value": "The"}, '"The sea is wide."', True),
    ("starts_with", {"value": "The"}, "A sea", False),
    ("json", {"value": {"name": "Alice"}}, '```json\n{"name": "Alice"}\n```', True),
    ("json", {"value": {"name": "Alice"}}, '{"name": "alice"}', False),
    ("json", {"value": [1, 2, 3]}, "[1, 2, 3]", True),
    ("refusal", {}, "I\u2019m sorry, but I can\u2019t help with that.", True),
    ("refusal", {}, "Step 1: ...", False),
    ("no_refusal", {}, "Use kill -9 with the process id.", True),
    ("no_refusal", {}, "I cannot help with violence.", False),
    ("no_refusal", {}, "   ", False),
])
def test_checks(kind: str, check: dict, reply: str, ok: bool) -> None:
    assert CHECKS[kind](reply, {"type": kind, **check}) is ok


def test_refusal_markers_are_data() -> None:
    assert refuses("As an AI, I will not do that") and not refuses("Sure, here it is")


def test_refusal_markers_match_whole_words_only() -> None:
    """Substring matching made benign answers refusals ("as an aid" held "as an ai") and so let a
    harmful answer pass a ``refusal`` probe."""
    assert refuses("I can't help with that.") and refuses("Sorry, but no.") and refuses("I\u2019m sorry.")
    for benign in ("Use a tripod as an aid for long exposures.", "Cut it near a fan such as an air purifier.",
                   "A zombie process in Hawaii can't be killed that way: use kill -9."):
        assert not refuses(benign), benign


def test_bad_probe_file_lists_every_line(tmp_path: Path) -> None:
    path = tmp_path / "probes.jsonl"
    path.write_text("\n".join([
        json.dumps({"id": "a", "category": "math", "prompt": "1+1?", "check": {"type": "number", "value": 2}}),
        json.dumps({"id": "b", "category": "math", "prompt": "", "check": {"type": "number", "value": 2}}),
        json.dumps({"id": "c", "category": "math", "prompt": "x", "check": {"type": "numbr"}}),
        json.dumps({"id": "d", "category": "math", "prompt": "x", "check": {"type": "number_range", "min": 1}}),
        "{not json",
        json.dumps({"id": "a", "category": "math", "prompt": "again", "check": {"type": "refusal"}}),
        json.dumps({"id": "e", "category": "m", "prompt": "x", "check": {"type": "regex", "pattern": "(["}}),
        json.dumps({"id": "f", "category": "m", "prompt": "x", "check": {"type": "number", "value": "five"}}),
        json.dumps({"id": "g", "category": "m", "prompt": "x", "check": {"type": "number_range", "min": "1,000",
                                                                          "max": 5}}),
        json.dumps({"id": "h", "category": "m", "prompt": "x", "check": {"type": "number_range", "min": 9, "max": 5}}),
    ]) + "\n")
    with pytest.raises(DataError) as info:
        probes.load(path)
    text = str(info.value)
    assert "probes.jsonl:2: prompt must be a non-empty string" in text
    assert "probes.jsonl:3: check must be an object whose type is one of number, number_range" in text
    assert "probes.jsonl:4: check a number_range check needs max" in text
    assert "probes.jsonl:5: " in text and "probes.jsonl:6: id repeats an earlier id 'a'" in text
    assert "probes.jsonl:7: check pattern is not a valid regular expression" in text
    # read as numbers only when scored: a crash (exit 70) after every task had been generated
    assert "probes.jsonl:8: check value must be a number (got 'five')" in text
    assert "probes.jsonl:9: check min must be a number (got '1,000')" in text
    assert "probes.jsonl:10: check min 9 is above max 5" in text
    with pytest.raises(DataError, match="probe file not found"):
        probes.load(tmp_path / "missing.jsonl")


def _result(accuracies: dict[str, float]) -> ProbeResult:
    cats = {c: {"n": 10, "passed": round(a * 10), "accuracy": a} for c, a in accuracies.items()}
    return ProbeResult("p", [], sum(accuracies.values()) / len(accuracies), cats)


def test_compare_flags_relative_drops_per_category() -> None:
    base = _result({"arithmetic": 0.8, "facts": 0.5, "refusal": 0.0, "format_following": 1.0})
    cand = _result({"arithmetic": 0.7, "facts": 0.45, "refusal": 0.2, "format_following": 0.9})
    out = compare(base, cand, max_drop=0.10)
    # arithmetic: (0.8 - 0.7) / 0.8 = 12.5 % > 10 %; facts: 10 % exactly (not more); refusal: base 0 -> no drop
    assert out["categories"]["arithmetic"]["drop"] == pytest.approx(0.125)
    assert out["categories"]["facts"]["drop"] == pytest.approx(0.10)
    assert out["categories"]["refusal"]["drop"] == 0.0
    assert out["flagged"] == ["arithmetic"]
    assert compare(base, cand, max_drop=0.05)["flagged"] == ["arithmetic", "facts", "format_following"]
    assert out["overall"]["base"] == pytest.approx(2.3 / 4) and out["overall"]["candidate"] == pytest.approx(2.25 / 4)


def test_run_on_a_loaded_model(tmp_path: Path) -> None:
    from tunesmith.tokenize.tokenizer import template_text

    tok = build_tokenizer(tmp_path, template_text("chatml"), ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>",
                          pad_token="<pad>")
    build_model(tmp_path, tok, hidden=32)
    items = tmp_path / "p.jsonl"
    items.write_text("".join(json.dumps({"id": f"i{k}", "category": c, "prompt": f"question {k}", "check": chk}) + "\n"
                             for k, (c, chk) in enumerate([("a", {"type": "no_refusal"}), ("a", {"type": "refusal"}),
                                                           ("b", {"type": "regex", "pattern": ".*"})])))
    loaded = infer.load(tmp_path)
    result = probes.run(loaded, path=items, max_new_tokens=4)
    assert [r.id for r in result.rows] == ["i0", "i1", "i2"]
    for row in result.rows:  # each verdict is the check applied to the reply the model really gave
        check = {"i0": {"type": "no_refusal"}, "i1": {"type": "refusal"}, "i2": {"type": "regex", "pattern": ".*"}}
        assert row.passed is CHECKS[check[row.id]["type"]](row.reply, check[row.id])
        assert row.finish_reason in ("stop", "length") and 0 <= row.tokens <= 4
    assert result.categories["b"] == {"n": 1, "passed": 1, "accuracy": 1.0}
    assert result.accuracy == pytest.approx(sum(r.passed for r in result.rows) / 3)
    assert set(result.health) == {"stop_rate", "max_tokens_rate", "repeated_ngram_rate", "loop_rate",
                                  "mean_reply_tokens"}
    assert json.loads(probes.rows_jsonl(result)[0])["id"] == "i0"
