"""The contamination guard: eval rows found in the training data (exactly or nearly) are reported,
excluded or fail the run, before any model is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.config import config_from_dict
from tunesmith.data import ingest
from tunesmith.audit import contamination
from tunesmith.audit.contamination import ContaminationError

SENTENCE = ("please summarise the quarterly maintenance report for the north plant including every "
            "pump that failed its pressure test and the date it was replaced by the night shift crew")


def _conv(user: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def _setup(tmp_path: Path, action: str = "exclude") -> tuple:
    train = [_conv(f"training question number {i} about topic {i * 7}", f"answer {i}") for i in range(30)]
    train.append(_conv(SENTENCE, "Pumps 3 and 7 failed."))
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    test = [_conv("a genuinely new question about boilers", "x"),               # clean
            _conv("training question number 4 about topic 28", "other answer"),  # same prompt as train row 5
            _conv(SENTENCE.replace("night shift", "day shift"), "Pumps 3 and 7 failed."),  # near copy of row 31
            _conv("Training  question number 9 about TOPIC 63", "answer 9")]    # whole row, case/space changed
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    config = config_from_dict({"base_model": "m", "datasets": [{"path": str(tmp_path / "train.jsonl")}],
                               "eval_tasks": [{"name": "qa", "path": str(tmp_path / "test.jsonl"), "scorer": "exact_match"}],
                               "contamination": {"action": action}})
    records = ingest([config.eval_tasks[0].dataset()]).records
    return config, records


def test_exact_and_near_copies_are_found_with_their_training_rows(tmp_path: Path) -> None:
    config, records = _setup(tmp_path)
    report = contamination.check(config, {"qa": records})
    found = {(Path(h.source).name, h.kind, Path(h.train_source).name) for h in report.hits}
    assert found == {("test.jsonl:2", "exact", "train.jsonl:5"), ("test.jsonl:3", "near", "train.jsonl:31"),
                     ("test.jsonl:4", "exact", "train.jsonl:10")}
    near = next(h for h in report.hits if h.kind == "near")
    assert 0.85 <= near.similarity < 1.0
    assert (report.train_rows, report.checked) == (31, 4)
    kept = contamination.keep(report, "qa", records)
    assert [str(r.source).rsplit(":", 1)[1] for r in kept] == ["1"]


def test_report_keeps_every_row_and_fail_stops(tmp_path: Path) -> None:
    config, records = _setup(tmp_path, "report")
    report = contamination.check(config, {"qa": records})
    assert len(report.hits) == 3 and len(contamination.keep(report, "qa", records)) == 4
    config, records = _setup(tmp_path, "fail")
    with pytest.raises(ContaminationError, match=r"3 of 4 eval rows also stand in the training data") as info:
        contamination.check(config, {"qa": records})
    assert "test.jsonl:3: eval task 'qa': near copy of training row" in str(info.value)


def test_threshold_is_configurable(tmp_path: Path) -> None:
    config, records = _setup(tmp_path)
    strict = config.model_copy(update={"contamination": config.contamination.model_copy(update={"threshold": 0.99})})
    assert {h.kind for h in contamination.check(strict, {"qa": records}).hits} == {"exact"}


def test_evaluate_fails_on_contamination_before_loading_a_model(tmp_path: Path) -> None:
    from tunesmith import evaluate

    config, _ = _setup(tmp_path, "fail")
    with pytest.raises(ContaminationError):
        evaluate.run(config)  # base_model "m" does not exist: the guard runs first
