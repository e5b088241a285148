"""Issue 15 item 9: refusals and JSON-schema breaks in the training replies are flagged before training."""

from __future__ import annotations

import json
from importlib import resources

import yaml
from audit_rows import chat, clean_chat, finding, fired, replace, where

from tunesmith.config import config_from_dict
from tunesmith.audit import audit_records
from tunesmith.audit.guidelines import load_guidelines

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


# --- issue 15 item 15: audit locations on files whose lines are not rows ------------------------

def _audit_file(path):  # noqa: ANN001, ANN202
    from tunesmith.audit import run

    cfg = config_from_dict({"base_model": "m", "datasets": [{"path": str(path)}], "val_set_size": 0})
    return run(cfg, tokenize=False)


def _rows(n: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": r.messages[0].content},
                          {"role": "assistant", "content": r.messages[1].content}]} for r in clean_chat(n)]


def test_audit_names_the_line_of_a_row_in_pretty_printed_json(tmp_path) -> None:  # noqa: ANN001
    rows = _rows(30)
    for k in (2, 20):  # planted: two refusals (> 5 %), the 3rd and 21st elements
        rows[k]["messages"][1]["content"] = "I'm sorry, but I cannot help with that."
    path = tmp_path / "pretty.json"
    path.write_text(json.dumps(rows, indent=2))
    lines = path.read_text().splitlines()
    answers = [k for k, text in enumerate(lines, start=1) if "I'm sorry" in text]
    starts = [max(k for k in range(1, a) if lines[k - 1] == "  {") for a in answers]  # each row object's "{"
    found = finding(_audit_file(path), "refusal_share")
    assert found.locations == tuple(f"{path}:{line}" for line in starts), (found.locations, starts)


def test_audit_names_the_line_of_a_jsonl_row_after_blank_lines(tmp_path) -> None:  # noqa: ANN001
    rows = _rows(30)
    for k in (2, 20):
        rows[k]["messages"][1]["content"] = "I'm sorry, but I cannot help with that."
    path = tmp_path / "gaps.jsonl"
    path.write_text("\n\n" + "\n\n".join(json.dumps(r) for r in rows) + "\n")  # row k (1-based) on line 2k + 1
    assert finding(_audit_file(path), "refusal_share").locations == (f"{path}:7", f"{path}:43")
