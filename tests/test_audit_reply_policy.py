"""Issue 15 item 9: refusals and JSON-schema breaks in the training replies are flagged before training."""

from __future__ import annotations

import json
from importlib import resources

import yaml
from audit_rows import chat, clean_chat, finding, fired, replace, where

from tunesmith.config import config_from_dict
from tunesmith.data.audit import audit_records
from tunesmith.data.audit.guidelines import load_guidelines

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
          "required": ["city", "population"]}


def test_more_than_5_percent_refusals_is_flagged() -> None:
    base = clean_chat(100)
    refusals = {k: chat(0, f"Tell me about topic {k}?", text) for k, text in zip(
        range(0, 60, 10), ["I'm sorry, but I can't help with that.", "I cannot assist with this request.",
                           "As an AI, I do not have opinions.", "I\u2019m unable to provide that.",
                           "Sorry, but that is not something I can do.", "I will not write that."])}
    rows = replace(base, refusals)
    found = finding(audit_records(rows), "refusal_share")
    assert found.count == 6 and set(found.locations) == where(rows, list(refusals))
    assert "6 of 100 training replies (6%) are refusals, more than 5%" in found.message
    five = replace(base, dict(list(refusals.items())[:5]))  # exactly 5 %: not more than the threshold
    assert "refusal_share" not in fired(audit_records(five))


def test_refusal_phrase_later_in_a_reply_is_not_a_refusal() -> None:
    late = "Volcanoes form where magma rises through the crust over many years, and honestly I cannot stress enough " \
           "how slowly that happens."
    rows = replace(clean_chat(100), {k: chat(0, f"Volcano question {k}?", late) for k in range(0, 100, 10)})
    assert "refusal_share" not in fired(audit_records(rows))


def test_refusal_markers_are_the_probes_markers() -> None:
    probes = yaml.safe_load(resources.files("tunesmith.evaluate.probes").joinpath("refusal.yaml").read_text("utf-8"))
    assert load_guidelines()["refusal_share"]["markers"] == probes["markers"]


def _config(tmp_path=None) -> object:  # noqa: ANN001
    return config_from_dict({"base_model": "m", "datasets": [{"path": "train.jsonl"}], "eval_tasks": [
        {"name": "cities", "path": "cities.jsonl", "scorer": "json", "json_schema": SCHEMA}]})


def test_training_replies_that_break_a_tasks_json_schema_are_flagged() -> None:
    good = [chat(k + 1, f"Give me city number {k} as JSON", json.dumps({"city": f"C{k}", "population": k * 1000}))
            for k in range(40)]
    bad = {3: chat(0, "City?", json.dumps({"city": "Paris", "population": "2.1 million"})),  # wrong type
           7: chat(0, "City?", '{"city": "Rome", "population": 2800000'),  # does not parse
           9: chat(0, "City?", "```json\n{\"city\": \"Oslo\"}\n```")}  # fenced, required field missing
    rows = replace(good, bad)
    found = finding(audit_records(rows, config=_config()), "json_schema_violation")
    assert found.count == 3 and set(found.locations) == where(rows, [3, 7, 9]) and found.severity == "error"
    assert "3 of 40 JSON training replies (92% valid)" in found.message and "eval task(s) cities" in found.message
    assert "json_schema_violation" not in fired(audit_records(good, config=_config()))
    assert "json_schema_violation" not in fired(audit_records(rows))  # no task with a schema: nothing to hold to
