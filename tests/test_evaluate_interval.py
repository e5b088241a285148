"""Each task's headline figure comes with a 95 % interval: Wilson for shares of right rows, a seeded
percentile bootstrap for macro-F1 and for means of row values; wide intervals are said."""

from __future__ import annotations

import json

import pytest

from tunesmith.config.schema import EvalTaskSpec
from tunesmith.evaluate import interval
from tunesmith.evaluate.run import score_rows
from tunesmith.evaluate.scorers import SCORERS, EvalRow
from tunesmith.evaluate.scorers.base import Scorer

LABELS = ["billing", "account", "shipping", "technical", "feature"]
SCHEMA = {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}


def _spec(scorer: str) -> EvalTaskSpec:
    return EvalTaskSpec(name="t", path="x.jsonl", scorer=scorer, json_schema=SCHEMA, labels=LABELS,
                        abstention="I cannot answer.")


def _label_rows(n: int, wrong_every: int) -> list[EvalRow]:
    """``n`` tickets cycling through the labels; every ``wrong_every``-th answered with the next label."""
    rows = []
    for i in range(n):
        gold = LABELS[i % len(LABELS)]
        answer = LABELS[(i + 1) % len(LABELS)] if i % wrong_every == 0 else gold
        rows.append(EvalRow(f"ticket {i}", gold, answer, source=f"t.jsonl:{i + 1}"))
    return rows


# rows for every scorer whose headline is a row figure: (gold, reply) pairs with some right and some wrong
CASES = {
    "json": [('{"a": 1}', '{"a": 1}'), ('{"a": 1}', "not json"), ('{"a": 2}', '{"a": 3}'), ('{"a": 1}', '{"a": 1}')],
    "label": [("billing", "billing"), ("account", "billing"), ("shipping", "shipping"), ("feature", "nonsense")],
    "grounded": [("I cannot answer.", "I cannot answer."), ("5 kg", "5 kg"), ("5 kg", "I cannot answer."), ("x", "y")],
    "exact_match": [("the red car", "the red car"), ("the red car", "a red car"), ("blue", "green"), ("a", "a")],
    "token_f1": [("the red car", "the red car"), ("the red car", "a red car"), ("blue", "green"), ("a", "a")],
    "contains": [("paris", "It is Paris."), ("rome", "Madrid"), ("oslo", "oslo"), ("bern", "no")],
    "regex": [(r"\d+ kg", "12 kg"), (r"\d+ kg", "heavy"), (r"^yes", "yes sir"), (r"^no", "maybe")],
    "numeric": [("12", "12"), ("12", "13"), ("3.5", "about 3.5"), ("7", "seven")],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_scorer_reproduces_its_headline_from_its_rows(name: str) -> None:
    """The interval and the gate's paired sign test both read the rows' part in the headline: a
    scorer whose rows do not add up to its headline (exact_match's rows carried token F1) would get
    an interval, and a noise verdict, of another metric."""
    scorer = SCORERS[name](_spec(name))
    rows = [EvalRow(f"q{i}", gold, reply) for i, (gold, reply) in enumerate(CASES[name] * 3)]
    score = score_rows(scorer, rows)
    assert scorer.headline_of(score.rows) == pytest.approx(score.metrics[score.main])
    assert score.interval is not None and score.interval.metric == score.main
    assert score.interval.low <= score.metrics[score.main] <= score.interval.high


def test_a_share_of_right_rows_gets_the_wilson_interval_honest_at_100_percent() -> None:
    scorer = SCORERS["exact_match"](_spec("exact_match"))
    rows = [EvalRow(f"q{i}", "yes", "yes" if i < 8 else "no") for i in range(10)]
    iv = score_rows(scorer, rows).interval
    assert iv.method == "wilson" and (iv.low, iv.high) == pytest.approx(interval.wilson(8, 10))
    assert (iv.low, iv.high) == pytest.approx((0.4902, 0.9433), abs=1e-4)  # by hand: centre .7167, half .2266
    perfect = score_rows(SCORERS["json"](_spec("json")), [EvalRow(f"q{i}", '{"a": 1}', '{"a": 1}') for i in range(30)])
    assert perfect.metrics["json_valid"] == 1.0
    assert perfect.interval.high == 1.0 and perfect.interval.low == pytest.approx(0.8865, abs=1e-4)  # not [1, 1]


def test_macro_f1_gets_a_seeded_bootstrap_that_narrows_with_more_rows() -> None:
    scorer = SCORERS["label"](_spec("label"))
    small = score_rows(scorer, _label_rows(50, wrong_every=4))
    again = score_rows(SCORERS["label"](_spec("label")), _label_rows(50, wrong_every=4))
    large = score_rows(SCORERS["label"](_spec("label")), _label_rows(1000, wrong_every=4))
    assert small.interval.method.startswith("bootstrap") and small.interval == again.interval  # same seed
    assert small.interval.low < small.metrics["macro_f1"] < small.interval.high
    assert 0.08 < small.interval.half_width < 0.2  # 50 tickets: about +-12 points
    assert large.interval.half_width < small.interval.half_width / 3  # ~1/sqrt(20) as wide
    assert large.interval.low < large.metrics["macro_f1"] < large.interval.high


def test_macro_f1_of_all_resamples_at_once_equals_sklearn_on_each_and_gives_the_same_interval(monkeypatch) -> None:
    """The label scorer counts every resample's macro-F1 with array operations: each figure equals sklearn's
    on that resample (answers outside the label set, a label never gold nor answered, a gold outside it),
    and the interval equals the one from calling ``headline_of`` once per resample."""
    import numpy as np

    rows = [EvalRow(f"ticket {i}", gold, answer, source=f"t.jsonl:{i + 1}")
            for i, (gold, answer) in enumerate([("billing", "billing"), ("account", "billing"), ("shipping", "nonsense"),
                                                ("billing", "shipping"), ("account", "account"), ("shipping", "shipping"),
                                                ("account", ""), ("billing", "billing")] * 3)]
    scorer = SCORERS["label"](_spec("label"))  # "technical" and "feature" never occur: F1 0 each
    score = score_rows(scorer, rows)
    scored = [r for r in score.rows if r.headline_value is not None]
    index = np.random.default_rng(3).integers(0, len(scored), size=(200, len(scored)))
    many = scorer.headline_of_resamples(scored, index)
    one_by_one = [scorer.headline_of([scored[i] for i in resample]) for resample in index]
    assert np.array_equal(Scorer.headline_of_resamples(scorer, scored, index), one_by_one)  # the default
    assert many.shape == (200,) and np.allclose(many, one_by_one, atol=1e-12)
    assert len(set(np.round(many, 9))) > 20  # the resamples do differ
    point = score.metrics["macro_f1"]
    assert (score.interval.low, score.interval.high) == pytest.approx(
        interval._bootstrap(scored, point, scorer.headline_of_resamples))
    monkeypatch.setattr(interval, "RESAMPLES", 300)  # the per-resample path costs ~6 ms a resample
    slow = interval._bootstrap(scored, point, lambda rows, idx: Scorer.headline_of_resamples(scorer, rows, idx))
    fast = interval._bootstrap(scored, point, scorer.headline_of_resamples)
    assert fast == pytest.approx(slow, abs=1e-12) and fast[0] < point < fast[1]


def test_continuous_row_values_get_a_bootstrap_of_the_mean_and_weak_scores_none() -> None:
    rows = [EvalRow(f"q{i}", "the red car is fast", reply) for i, reply in
            enumerate(["the red car is fast", "a red car", "the car", "nothing at all", "red car fast"] * 4)]
    f1 = score_rows(SCORERS["token_f1"](_spec("token_f1")), rows)
    assert f1.interval.method.startswith("bootstrap") and f1.interval.low < f1.metrics["token_f1"] < f1.interval.high
    bleu = score_rows(SCORERS["bleu"](_spec("bleu")), rows)
    assert bleu.interval is None  # corpus-level overlap: no row figure to resample


def test_wide_intervals_are_said_and_written(tmp_path) -> None:
    from types import SimpleNamespace

    from tunesmith.evaluate import output

    small = score_rows(SCORERS["label"](_spec("label")), _label_rows(20, wrong_every=3))
    large = score_rows(SCORERS["label"](_spec("label")), _label_rows(2000, wrong_every=3))
    tasks = {"tickets": SimpleNamespace(score=small, excluded=0, rows=[]),
             "big": SimpleNamespace(score=large, excluded=0, rows=[])}
    notes = interval.wide_notes(tasks)
    assert len(notes) == 1 and notes[0].startswith("note: tickets has 20 rows: the 95 % interval of its macro_f1 is")
    assert "within row noise" in notes[0]
    result = SimpleNamespace(name="m", model_dir=tmp_path, seconds=1.0, generated_tokens=0, tokens_per_s=0.0,
                             cached_replies=None, notes=[], tasks=tasks, probes=None, contamination=None)
    written = json.loads(json.dumps(output.summary(result)))["tasks"]["tickets"]["interval"]
    assert written["metric"] == "macro_f1" and written["confidence"] == 0.95 and written["n"] == 20
    assert (written["low"], written["high"]) == (small.interval.low, small.interval.high)

