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


def test_rows_of_a_one_line_json_array_are_excluded_one_by_one(tmp_path: Path) -> None:
    """Every element of a compact JSON array is at ``file:1``: one contaminated element excluded them
    all (and the gate's pairing by source collapsed them into one)."""
    config, records = _setup(tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "test.jsonl").read_text().splitlines()]
    (tmp_path / "test.json").write_text(json.dumps(rows))  # one line
    config = config.model_copy(update={"eval_tasks": [config.eval_tasks[0].model_copy(
        update={"path": str(tmp_path / "test.json")})]})
    records = ingest([config.eval_tasks[0].dataset()]).records
    assert {str(r.source) for r in records} == {f"{tmp_path / 'test.json'}:1"}
    report = contamination.check(config, {"qa": records})
    assert sorted(Path(h.source).name for h in report.hits) == ["test.json:1 (row 2)", "test.json:1 (row 3)",
                                                                 "test.json:1 (row 4)"]
    kept = contamination.keep(report, "qa", records)
    assert [r.messages[0].content for r in kept] == ["a genuinely new question about boilers"]


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


def _whole_list_check(train: list, evals: list, threshold: float) -> list[tuple[int, int, str, float]]:
    """The guard as it was before it streamed: every training text in lists and dicts."""
    from tunesmith.audit.guidelines import load_guidelines
    from tunesmith.audit.minhash import near_duplicates

    texts = [contamination._texts(r) for r in train]
    prompts = {p: i for i, (p, _) in reversed(list(enumerate(texts))) if p}
    pairs = {f"{p}\x00{a}": i for i, (p, a) in reversed(list(enumerate(texts)))}
    found = {}
    for k, r in enumerate(evals):
        p, a = contamination._texts(r)
        i = pairs.get(f"{p}\x00{a}", prompts.get(p) if p else None)
        if i is not None:
            found[k] = (k, i, "exact", 1.0)
    g = load_guidelines()["near_duplicate"]
    joined = [f"{p}\n{a}" for p, a in texts] + [f"{p}\n{a}" for p, a in map(contamination._texts, evals)]
    for i, j, sim in near_duplicates(joined, threshold, ngram=g["ngram"], num_perm=g["num_perm"],
                                     margin=g["lsh_margin"], seed=g["seed"]):
        if i < len(train) <= j and (j - len(train)) not in found:
            found[j - len(train)] = (j - len(train), i, "near", round(sim, 4))
    return [found[k] for k in sorted(found)]


def test_guard_streams_training_rows_kept_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Training rows past SPILL_ROWS (3 here) stay on disk and are never held as texts: the same hits
    (first training row of each copy, duplicates in the training data, prompt-only copies) as the
    in-memory lists gave."""
    import importlib

    from tunesmith.data.store import on_disk

    ingest_module = importlib.import_module("tunesmith.data.ingest")

    config, records = _setup(tmp_path)
    with (tmp_path / "train.jsonl").open("a") as fh:  # later duplicates: the first training row is named
        fh.write(json.dumps(_conv("training question number 4 about topic 28", "answer 4")) + "\n")
        fh.write(json.dumps(_conv(SENTENCE, "Pumps 3 and 7 failed.")) + "\n")
    memory = contamination.check(config, {"qa": records})
    monkeypatch.setattr(ingest_module, "SPILL_ROWS", 3)
    train = ingest([config.datasets[0]], on_bad_rows="skip").records
    assert on_disk(train) and len(train) == 33
    disk = contamination.check(config, {"qa": records})
    assert disk == memory and len(disk.hits) == 3
    threshold = config.audit.near_duplicate_threshold
    expected = _whole_list_check(list(train), records, threshold)
    sources = [str(train[i].source) for _, i, _, _ in expected]
    assert [(h.train_source, h.kind, h.similarity) for h in disk.hits] == [
        (s, kind, sim) for s, (_, _, kind, sim) in zip(sources, expected)]
    assert contamination.training_rows_in(train, records, threshold) == \
        contamination.training_rows_in(list(train), records, threshold)
