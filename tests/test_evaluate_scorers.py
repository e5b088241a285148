"""Scorers: hand-computed metrics for json, label and grounded tasks."""

from __future__ import annotations

import json

import pytest

from tunesmith.evaluate.scorers import (
    SCORERS,
    Confusion,
    score_grounded,
    score_json,
    score_label,
)

SCHEMA = {
    "type": "object",
    "required": ["station", "takt_time_sec", "cycle_time_sec", "machines_required", "utilization_pct", "bottleneck"],
    "additionalProperties": False,
    "properties": {
        "station": {"type": "string"},
        "takt_time_sec": {"type": "number"},
        "cycle_time_sec": {"type": "number"},
        "machines_required": {"type": "integer", "minimum": 1},
        "utilization_pct": {"type": "number", "minimum": 0, "maximum": 100},
        "bottleneck": {"type": "boolean"},
    },
}
GOLD = {"station": "Weld 3", "takt_time_sec": 60, "cycle_time_sec": 55.0, "machines_required": 2,
        "utilization_pct": 91.7, "bottleneck": True}
FIELDS = list(SCHEMA["properties"])


def _out(**changes: object) -> str:
    return json.dumps({**GOLD, **changes})


def test_json_mixed_rows_exact_metrics() -> None:
    outputs = [
        _out(station="  weld   3 "),                # 0: right (string casefold + whitespace)
        _out(machines_required="2"),                # 1: wrong type -> schema fail, field wrong
        _out(utilization_pct=92.1, takt_time_sec=60.0),  # 2: within tolerance 0.5; 60.0 == 60
        _out(utilization_pct=93.0),                 # 3: outside tolerance
        "```json\n" + _out() + "\n```",             # 4: fenced, right
        "  The station is Weld 3, I think.  ",      # 5: garbage
    ]
    golds = [json.dumps(GOLD)] * 6
    result = score_json("takt", outputs, golds, SCHEMA, tolerance={"utilization_pct": 0.5})
    m = result.metrics
    assert (result.task, result.scorer, result.n, result.main) == ("takt", "json", 6, "json_valid")
    assert m["json_valid"] == pytest.approx(5 / 6)
    assert m["schema_compliance"] == pytest.approx(4 / 6)
    assert m["field_station"] == pytest.approx(5 / 6)
    assert m["field_takt_time_sec"] == pytest.approx(5 / 6)
    assert m["field_cycle_time_sec"] == pytest.approx(5 / 6)
    assert m["field_machines_required"] == pytest.approx(4 / 6)
    assert m["field_utilization_pct"] == pytest.approx(4 / 6)
    assert m["field_bottleneck"] == pytest.approx(5 / 6)
    assert m["all_fields"] == pytest.approx(3 / 6)
    assert set(m) == {"json_valid", "schema_compliance", "all_fields", *(f"field_{f}" for f in FIELDS)}
    assert [r.correct for r in result.rows] == [True, False, True, False, True, False]
    assert [r.detail["schema_ok"] for r in result.rows] == [True, False, True, True, True, False]
    assert result.rows[1].detail["fields"]["machines_required"] is False
    assert "integer" in result.rows[1].detail["schema_error"]
    assert result.rows[3].detail["fields"] == {f: f != "utilization_pct" for f in FIELDS}
    assert result.rows[4].prediction == json.dumps(GOLD, separators=(",", ":"))
    assert result.rows[5].prediction == "The station is Weld 3, I think."
    assert result.rows[5].detail["valid_json"] is False
    assert result.confusion is None


def test_json_default_tolerance_is_exact_and_types_are_strict() -> None:
    outputs = [_out(utilization_pct=91.70001), _out(bottleneck=1), _out(station=None)]
    result = score_json("t", outputs, [json.dumps(GOLD)] * 3, SCHEMA)
    assert [r.detail["fields"]["utilization_pct"] for r in result.rows] == [False, True, True]
    assert [r.detail["fields"]["bottleneck"] for r in result.rows] == [True, False, True]
    assert [r.detail["fields"]["station"] for r in result.rows] == [True, True, False]


def test_json_missing_key_extra_key_and_non_object() -> None:
    missing = {k: v for k, v in GOLD.items() if k != "bottleneck"}
    outputs = [json.dumps(missing), _out(extra="x"), json.dumps([GOLD]), "```\n" + _out() + "\n```"]
    result = score_json("t", outputs, [json.dumps(GOLD)] * 4, SCHEMA)
    rows = result.rows
    assert rows[0].detail["fields"]["bottleneck"] is False and rows[0].detail["schema_ok"] is False
    assert rows[1].correct is True and rows[1].detail["schema_ok"] is False  # additionalProperties
    assert rows[2].detail["valid_json"] is False and not any(rows[2].detail["fields"].values())
    assert rows[3].correct is True  # bare ``` fence
    assert result.metrics["json_valid"] == pytest.approx(3 / 4)


def test_json_optional_property_absent_from_gold() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "note": {"type": "string"}}}
    result = score_json("t", ['{"a": 1}', '{"a": 1, "note": "x"}'], ['{"a": 1}'] * 2, schema)
    assert [r.detail["fields"]["note"] for r in result.rows] == [True, False]


def test_json_validator_follows_dollar_schema() -> None:
    props = {"properties": {"a": {}, "b": {}}, "dependencies": {"a": ["b"]}}
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", **props}
    # "dependencies" is a Draft 7 keyword; Draft 2020-12 (the default) ignores it.
    assert score_json("t", ['{"a": 1}'], ['{"a": 1}'], draft7).rows[0].detail["schema_ok"] is False
    assert score_json("t", ['{"a": 1}'], ['{"a": 1}'], props).rows[0].detail["schema_ok"] is True


def test_json_bad_gold_names_row() -> None:
    with pytest.raises(ValueError, match="row 1"):
        score_json("t", ["{}", "{}"], ["{}", "{not json"], SCHEMA)
    with pytest.raises(ValueError, match="row 0"):
        score_json("t", ["{}"], ["[1]"], SCHEMA)


LABELS = ["positive", "negative", "neutral"]


def test_label_confusion_and_macro_f1_by_hand() -> None:
    golds = ["positive", "positive", "positive", "negative", "negative", "neutral", "neutral", "Neutral"]
    outputs = ["Positive.", '"positive"', "negative", "NEGATIVE!", "I am not sure", "neutral", "positive",
               " 'Neutral' . "]
    result = score_label("sentiment", outputs, golds, LABELS)
    assert result.confusion == Confusion(
        labels=LABELS,
        columns=[*LABELS, "(other)"],
        matrix=[[2, 1, 0, 0], [0, 1, 0, 1], [1, 0, 2, 0]],
    )
    # F1 positive: P=2/3 R=2/3 -> 2/3; negative: P=1/2 R=1/2 -> 1/2; neutral: P=1 R=2/3 -> 4/5.
    assert result.metrics["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 4 / 5) / 3)
    assert result.metrics["accuracy"] == pytest.approx(5 / 8)
    assert result.metrics["valid_label_rate"] == pytest.approx(7 / 8)
    assert result.main == "macro_f1" and result.scorer == "label"
    assert [r.prediction for r in result.rows][4] == "(other)"
    assert result.rows[4].detail["normalised"] == "i am not sure"
    assert [r.correct for r in result.rows] == [True, True, False, True, False, True, False, True]


def test_label_normalisation_and_absent_label_counts_zero() -> None:
    result = score_label("t", ['"Negative."', "positive!!", "neutral"], ["negative", "positive", "neutral"],
                         ["Positive", "Negative", "Neutral", "Mixed"])
    assert [r.prediction for r in result.rows] == ["Negative", "Positive", "Neutral"]
    assert result.metrics["accuracy"] == 1.0
    assert result.metrics["macro_f1"] == pytest.approx(3 / 4)  # "Mixed" never gold nor predicted -> F1 0


def test_label_errors() -> None:
    with pytest.raises(ValueError, match="row 2"):
        score_label("t", ["a", "a", "a"], ["positive", "neutral", "angry"], LABELS)
    with pytest.raises(ValueError, match="repeat"):
        score_label("t", [], [], ["Yes", "yes"])


ABSTAIN = "I cannot answer from the context."


def test_grounded_abstentions_by_hand() -> None:
    golds = ["Paris", "42 units", "Weld 3", "Line B", ABSTAIN, ABSTAIN]
    outputs = ["paris.", "42   Units", ABSTAIN, "Line C", "i cannot  answer from the context", "Line A"]
    result = score_grounded("qa", outputs, golds, ABSTAIN)
    assert result.metrics == pytest.approx({
        "accuracy": 3 / 6,
        "abstention_accuracy": 1 / 2,
        "false_abstention_rate": 1 / 4,
        "answer_accuracy": 2 / 4,
    })
    assert [r.correct for r in result.rows] == [True, True, False, False, True, False]
    assert [r.detail["abstained"] for r in result.rows] == [False, False, True, False, True, False]
    assert result.rows[1].prediction == "42 units"
    assert (result.main, result.scorer, result.n) == ("accuracy", "grounded", 6)


def test_grounded_omits_subset_metrics_without_rows() -> None:
    answerable = score_grounded("qa", ["a", ABSTAIN], ["a", "b"], ABSTAIN)
    assert answerable.metrics == {"accuracy": 0.5, "false_abstention_rate": 0.5, "answer_accuracy": 0.5}
    unanswerable = score_grounded("qa", ["x", ABSTAIN], [ABSTAIN, ABSTAIN], ABSTAIN)
    assert unanswerable.metrics == {"accuracy": 0.5, "abstention_accuracy": 0.5}


def test_empty_and_length_mismatch() -> None:
    assert score_json("t", [], [], SCHEMA).metrics == {
        "json_valid": 0.0, "schema_compliance": 0.0, "all_fields": 0.0, **{f"field_{f}": 0.0 for f in FIELDS}
    }
    assert score_label("t", [], [], LABELS).metrics == {"accuracy": 0.0, "macro_f1": 0.0, "valid_label_rate": 0.0}
    assert score_label("t", [], [], LABELS).confusion.matrix == [[0] * 4] * 3
    assert score_grounded("t", [], [], ABSTAIN).metrics == {"accuracy": 0.0}
    for scorer, extra in [(score_json, SCHEMA), (score_label, LABELS), (score_grounded, ABSTAIN)]:
        with pytest.raises(ValueError, match="2 outputs but 1 golds"):
            scorer("t", ["a", "b"], ["a"], extra)


def test_registry() -> None:
    """One table: every scorer name the config accepts, each class registered under its own name;
    the json/label/grounded classes score exactly as their functions do."""
    from typing import get_args

    from tunesmith.config.schema import EvalTaskSpec, ScorerName
    from tunesmith.evaluate.scorers import EvalRow

    assert list(SCORERS) == list(get_args(ScorerName))
    assert all(cls.name == name for name, cls in SCORERS.items())
    spec = EvalTaskSpec(name="t", path="x.jsonl", scorer="json", json_schema=SCHEMA, labels=LABELS,
                        abstention=ABSTAIN)
    outputs, golds = [_out(), "nope"], [json.dumps(GOLD)] * 2
    rows = [EvalRow("p", g, o) for o, g in zip(outputs, golds)]
    assert SCORERS["json"](spec).score(rows).metrics == score_json("t", outputs, golds, SCHEMA).metrics
    rows = [EvalRow("p", "positive", "Positive."), EvalRow("p", "neutral", "x")]
    assert SCORERS["label"](spec).score(rows).metrics == score_label("t", ["Positive.", "x"], ["positive", "neutral"],
                                                                     LABELS).metrics
    rows = [EvalRow("p", ABSTAIN, ABSTAIN), EvalRow("p", "a", "b")]
    assert SCORERS["grounded"](spec).score(rows).metrics == score_grounded("t", [ABSTAIN, "b"], [ABSTAIN, "a"],
                                                                           ABSTAIN).metrics


def test_eval_task_config_errors_name_the_key():
    from tunesmith.config import config_from_dict
    from tunesmith.errors import ConfigError

    raw = {"base_model": "m", "datasets": [{"path": "d.jsonl"}],
           "eval_tasks": [{"name": "plan", "path": "t.jsonl", "scorer": "json"}]}
    with pytest.raises(ConfigError, match=r"eval_tasks\[0\]: json_schema"):
        config_from_dict(raw)
    raw["eval_tasks"][0]["scorer"] = "jsn"
    with pytest.raises(ConfigError, match=r"eval_tasks\[0\]\.scorer"):
        config_from_dict(raw)


def test_eval_task_schema_and_names_are_checked():
    from tunesmith.config import config_from_dict
    from tunesmith.errors import ConfigError

    task = {"name": "plan", "path": "t.jsonl", "scorer": "json", "json_schema": {"type": "objekt"}}
    raw = {"base_model": "m", "datasets": [{"path": "d.jsonl"}], "eval_tasks": [task]}
    with pytest.raises(ConfigError, match="not a valid JSON Schema"):
        config_from_dict(raw)
    task["json_schema"] = {"type": "object"}
    raw["eval_tasks"] = [task, dict(task)]
    with pytest.raises(ConfigError, match="task names must be unique"):
        config_from_dict(raw)


def test_bad_gold_answers_fail_before_any_model_is_loaded(tmp_path):
    import json as _json

    from tunesmith import evaluate
    from tunesmith.config import config_from_dict
    from tunesmith.errors import DataError

    rows = [{"messages": [{"role": "user", "content": "plan it"}, {"role": "assistant", "content": '{"a": 1}'}]},
            {"messages": [{"role": "user", "content": "plan that"}, {"role": "assistant", "content": "not json"}]}]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(_json.dumps(r) + "\n" for r in rows))
    config = config_from_dict({"base_model": str(tmp_path / "no-model"), "datasets": [{"path": str(path)}],
                               "eval_tasks": [{"name": "plan", "path": str(path), "scorer": "json",
                                               "json_schema": {"type": "object"}}]})
    with pytest.raises(DataError, match=r"test.jsonl:2: messages the gold answer is not a JSON object"):
        evaluate.run(config)


def test_a_categorys_macro_f1_is_over_the_labels_it_holds() -> None:
    """Category A: two billing tickets, both right. Scored over the task's three labels it was 0.333
    (the two labels A never holds nor gets counted as F1 0); over its own labels it is 1.0."""
    from tunesmith.config.schema import EvalTaskSpec
    from tunesmith.evaluate.run import score_rows
    from tunesmith.evaluate.scorers import EvalRow

    spec = EvalTaskSpec(name="t", path="x.jsonl", scorer="label", labels=["billing", "bug", "other"])
    rows = [EvalRow("a1", "billing", "billing", category="A"), EvalRow("a2", "billing", "billing", category="A"),
            EvalRow("b1", "bug", "other", category="B"), EvalRow("b2", "other", "other", category="B")]
    score = score_rows(SCORERS["label"](spec), rows)
    assert score.categories["A"]["metrics"]["macro_f1"] == 1.0
    assert score.categories["B"]["metrics"]["macro_f1"] == pytest.approx((0 + 2 / 3) / 2)  # bug 0, other 2/3
    assert score.metrics["macro_f1"] == pytest.approx((1 + 0 + 2 / 3) / 3)  # the task: all three labels
