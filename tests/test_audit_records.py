"""Audit checks on chat records: each finds its planted rows and stays quiet on clean data."""

from __future__ import annotations

from audit_rows import chat, clean_chat, finding, fired, replace, where

from tunesmith.config import config_from_dict
from tunesmith.audit import audit_records, check_names
from tunesmith.data.records import Message, Record, Source, ToolCall

BASE = {"base_model": "m", "datasets": [{"path": "train.jsonl"}]}


def test_clean_splits_fire_nothing() -> None:
    report = audit_records(clean_chat(120), clean_chat(40, "eval.jsonl", seed=1), clean_chat(40, "test.jsonl", seed=2))
    assert report.findings == []
    assert report.rows == 200 and report.stats["splits"] == {"train": 120, "eval": 40, "test": 40}
    assert set(report.stats["token_lengths"]) == {"train", "eval", "test"}
    assert set(report.stats["token_lengths"]["train"]) >= {"p50", "p90", "p99", "max"}
    assert set(report.stats["skipped_checks"]) == {"missing_eos", "over_length", "template_error"}


def test_check_names_are_the_interface() -> None:
    assert set(check_names()) >= {
        "schema", "empty_response", "short_response", "truncated_response", "missing_eos", "exact_duplicate",
        "near_duplicate", "over_length", "length_outlier", "length_mismatch", "label_leakage",
        "split_contamination", "system_prompt_inconsistent", "template_monotony", "class_imbalance",
        "too_few_examples", "encoding", "language_mix", "pii", "preference_identical", "preference_conflict",
        "rag_no_negatives",
    }


def test_empty_and_short_responses() -> None:
    base = clean_chat()
    tool_call = Record("sft", Source("x", 1), "chat", (
        Message("user", "Weather in Paris today, please?"),
        Message("assistant", "", tool_calls=(ToolCall("weather", {"city": "Paris"}),)),
    ))
    rows = replace(base, {3: chat(0, "Say something about volcanoes, case 1?", "   "), 7: tool_call,
                          10: chat(0, "Describe glaciers for me, case 2?", "Ok."),
                          11: chat(0, "Explain tax brackets for me, case 3?", "Yes")})
    report = audit_records(rows)
    assert set(finding(report, "empty_response").locations) == where(rows, [3])
    short = finding(report, "short_response")
    assert set(short.locations) == where(rows, [10, 11]) and short.severity == "warning"


def test_truncated_responses_by_each_symptom() -> None:
    base = clean_chat()
    plants = {
        2: "Most people first notice how energy flows in everyday life, and then they begin to",
        4: "Here is the code:\n```python\nprint('hello world')\nfor i in range(3):\n    print(i)",
        6: "The main factors (energy, timing and cost are what engineers measure first here.",
        8: 'He said "this is the important part of the story and then left the room.',
    }
    rows = replace(base, {k: chat(0, f"Question number {k} about jazz harmony?", v) for k, v in plants.items()})
    found = finding(report := audit_records(rows), "truncated_response")
    assert set(found.locations) == where(rows, list(plants))
    for symptom in ("mid-sentence", "code fence", "brackets or quotes"):
        assert symptom in found.message
    assert report.rows == 120


def test_invalid_json_in_a_json_set() -> None:
    rows = [chat(k + 1, f"Extract fields from record {k} of the ledger.", f'{{"id": {k}, "name": "item {k}"}}')
            for k in range(40)]
    rows[5] = chat(6, "Extract fields from record 5 of the ledger.", '{"id": 5, "name": "item')
    report = audit_records(rows)
    found = finding(report, "truncated_response")
    assert found.locations == ("train.jsonl:6",) and "invalid JSON" in found.message
    assert "truncated_response" not in fired(audit_records(rows[:5] + rows[6:]))


def test_json_replies_do_not_make_short_prose_look_cut_off() -> None:
    # a multi-task set: JSON replies end in '}', which says nothing about how prose replies end
    rows = [chat(k + 1, f"Plan station {k} of the line, please.",
                 f'{{"station": "press {k}", "takt_time_sec": {k + 30}, "machines_required": {k % 4 + 1}}}')
            for k in range(60)]
    rows += [chat(100 + k, f"Spec sheet {k}: what is the footprint?", f"{k}.5 x 2.{k} m") for k in range(12)]
    assert "truncated_response" not in fired(audit_records(rows))
    rows[3] = chat(4, "Plan station 3 of the line, please.", '{"station": "press 3", "takt_time_sec"')
    assert finding(audit_records(rows), "truncated_response").locations == ("train.jsonl:4",)


def test_exact_duplicates_on_pair_prompt_and_response() -> None:
    base = clean_chat()
    p0, a0 = base[0].messages[0].content, base[0].messages[1].content
    p1, a2 = base[1].messages[0].content, base[2].messages[1].content
    rows = replace(base, {50: chat(0, p0, a0), 51: chat(0, p1, "A different answer that is long enough to count."),
                          52: chat(0, "An unrelated new question about sailing knots, case 77?", a2)})
    found = finding(audit_records(rows), "exact_duplicate")
    assert set(found.locations) == where(rows, [50, 51, 52])
    assert "1 repeat a whole row" in found.message and "only the prompt" in found.message


def test_duplicates_see_unicode_forms_as_one_and_tool_calls_as_answers() -> None:
    """The same row with its accents decomposed (NFD) is a copy; two answers that call different functions are
    not (they were 'a whole row' repeated: the checks compared the content only, empty for a call)."""
    import unicodedata

    base = clean_chat()
    p, a = "Où se trouve la gare de Genève, s'il vous plaît ?", "La gare de Genève est près du lac, à Cornavin."
    calls = [Record("sft", Source("train.jsonl", 0, 0), "chat", (
        Message("user", "What should I know about Paris right now?"),
        Message("assistant", "", tool_calls=(ToolCall(name, {"city": "Paris"}),)))) for name in ("weather", "time")]
    rows = replace(base, {40: chat(0, p, a), 41: chat(0, unicodedata.normalize("NFD", p),
                                                       unicodedata.normalize("NFD", a)), 70: calls[0], 71: calls[1]})
    found = finding(audit_records(rows), "exact_duplicate")
    assert set(found.locations) == where(rows, [41, 71])
    assert "1 repeat a whole row" in found.message and "1 repeat only the prompt" in found.message


def test_near_duplicates_but_not_exact_ones() -> None:
    base = clean_chat()
    p, a = base[5].messages[0].content, base[5].messages[1].content
    rows = replace(base, {60: chat(0, p.upper(), a.replace(".", "!")),  # same words: Jaccard 1.0
                          61: chat(0, p, a.replace(a.split()[2], "zebra", 1))})  # one word changed
    found = finding(audit_records(rows), "near_duplicate")
    assert set(found.locations) == where(rows, [60, 61])
    exact = replace(base, {60: chat(0, p, a)})
    assert "near_duplicate" not in fired(audit_records(exact))  # reported as exact_duplicate only


def test_near_duplicate_threshold_is_configurable() -> None:
    base = clean_chat()
    words = base[5].messages[1].content.split()
    words[3:8] = ["completely", "different", "words", "go", "here"]
    rows = replace(base, {61: chat(0, base[5].messages[0].content, " ".join(words))})
    assert "near_duplicate" not in fired(audit_records(rows))
    loose = config_from_dict({**BASE, "audit": {"near_duplicate_threshold": 0.5}})
    assert set(finding(audit_records(rows, config=loose), "near_duplicate").locations) == where(rows, [61])


def test_split_contamination_exact_prompt_and_near() -> None:
    train = clean_chat(100)
    held = clean_chat(30, "eval.jsonl", seed=3)
    test = clean_chat(30, "test.jsonl", seed=4)
    t0, t1, t2 = (r.messages for r in train[:3])
    held = replace(held, {4: chat(0, t0[0].content, t0[1].content),  # exact row
                          9: chat(0, t1[0].content, "Another answer entirely, written for the eval split.")})
    test = replace(test, {2: chat(0, t2[0].content + " Thanks!", t2[1].content)})  # near
    report = audit_records(train, held, test)
    found = finding(report, "split_contamination")
    assert set(found.locations) == where(held, [4, 9]) | where(test, [2])
    assert found.severity == "error" and "2 exactly or by prompt, 1 nearly" in found.message
    assert "near_duplicate" not in fired(report) and "exact_duplicate" not in fired(report)


def test_label_leakage() -> None:
    base = clean_chat()
    rows = replace(base, {
        20: chat(0, "Translate nothing, just repeat: the answer is forty two apples. Now answer.",
                 "The answer is forty two apples."),
        21: chat(0, "Who wrote it?", "Nobody knows."),  # short answers are not searched
    })
    found = finding(audit_records(rows), "label_leakage")
    assert set(found.locations) == where(rows, [20])


def test_label_leakage_ignores_a_phrase_every_prompt_carries() -> None:
    """An abstention phrase named in the instruction of every prompt is no leak; the same answer
    leaking only into its own rows' prompts still is."""
    base = clean_chat()
    rule = " If the sheet does not say, reply: Not found in the sheet"
    asked = replace(base, {k: chat(0, base[k].messages[0].content + rule,
                                   "Not found in the sheet" if k % 4 == 0 else base[k].messages[1].content)
                           for k in range(0, 16)})
    assert "label_leakage" not in fired(audit_records(asked))
    own = replace(base, {k: chat(0, base[k].messages[0].content + " (answer: not found in the sheet)",
                                 "Not found in the sheet") for k in (0, 4, 8)})
    assert set(finding(audit_records(own), "label_leakage").locations) == where(own, [0, 4, 8])


def test_system_prompt_variants_and_configured_prompt() -> None:
    sys_a = "You are a helpful tutor."
    base = [chat(r.source.row, r.messages[0].content, r.messages[1].content, system=sys_a) for r in clean_chat()]
    odd = replace(base, {7: chat(0, "Explain volcanoes please, case 5?", "Volcanoes vent magma from below.",
                                 system="You are a pirate.")})
    assert set(finding(audit_records(odd), "system_prompt_inconsistent").locations) == where(odd, [7])
    assert "system_prompt_inconsistent" not in fired(audit_records(base))
    configured = config_from_dict({**BASE, "system_prompt": sys_a + " "})  # differs in one byte
    found = finding(audit_records(base, config=configured), "system_prompt_inconsistent")
    assert found.count == 120 and "only in whitespace" in found.message
    same = config_from_dict({**BASE, "system_prompt": sys_a})
    assert "system_prompt_inconsistent" not in fired(audit_records(base, config=same))


def test_template_monotony_from_ten_templates() -> None:
    templates = [f"Write a poem about {{}} in style {k}." for k in range(5)] + [
        f"Please list three facts on {{}} for reader {k}." for k in range(5)]
    answers = [r.messages[1].content for r in clean_chat(200)]
    rows = [chat(k + 1, templates[k % 10].format(f"topic {k}"), answers[k]) for k in range(200)]
    found = finding(audit_records(rows), "template_monotony")
    assert found.count == 200 and "100%" in found.message


def test_shared_instruction_prefix_is_not_monotony() -> None:
    rows = [chat(r.source.row, "Answer in one paragraph. " + r.messages[0].content, r.messages[1].content)
            for r in clean_chat()]
    assert "template_monotony" not in fired(audit_records(rows))
