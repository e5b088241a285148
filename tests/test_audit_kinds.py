"""Audit checks on labels, preference pairs, RAG rows, text hygiene, ingestion errors and lengths."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from audit_rows import chat, clean_chat, finding, fired, replace, where

from tunesmith.config import config_from_dict
from tunesmith.audit import AuditFailed, audit_records
from tunesmith.data.records import Message, Record, Source
from tunesmith.errors import ConfigError, RowError

BASE = {"base_model": "m", "datasets": [{"path": "train.jsonl"}]}


def classification(counts: dict[str, int]) -> list[Record]:
    rows, k = [], 0
    bodies = [r.messages[0].content for r in clean_chat(sum(counts.values()), seed=7)]
    for label, n in counts.items():
        for _ in range(n):
            k += 1
            text = f"Classify the text as one of: {', '.join(counts)}.\n\n{bodies[k - 1]}"
            rows.append(Record("sft", Source("cls.jsonl", k, k), "classification",
                               (Message("user", text), Message("assistant", label)), label=label))
    return rows


def test_class_imbalance_and_size_per_class() -> None:
    balanced = audit_records(classification({"positive": 80, "negative": 70}))
    assert balanced.findings == [] and balanced.stats["classes"] == {"positive": 80, "negative": 70}
    assert balanced.stats["task_type"] == "classification"
    skewed = classification({"positive": 600, "negative": 70, "neutral": 12})
    report = audit_records(skewed)
    imb = finding(report, "class_imbalance")
    assert imb.count == 12 and {r.source.row for r in skewed if r.label == "neutral"} == {
        int(loc.split(":")[1]) for loc in imb.locations}
    few = finding(report, "too_few_examples")
    assert few.count == 50 - 12 and "neutral 12" in few.message


def test_too_few_examples_for_sft() -> None:
    found = finding(audit_records(clean_chat(40)), "too_few_examples")
    assert found.count == 60 and "40 training rows for a sft task" in found.message
    assert "too_few_examples" not in fired(audit_records(clean_chat(100)))


def test_encoding_problems() -> None:
    base = clean_chat()
    rows = replace(base, {1: chat(0, "Explain caf\u00c3\u00a9 culture, case 1?", "It is about cafés and more."),
                          2: chat(0, "Explain bells, case 2?", "A bell rings\x07 when struck by a hammer."),
                          3: chat(0, "Explain glyphs, case 3?", "This glyph \ufffd could not be decoded.")})
    found = finding(audit_records(rows), "encoding")
    assert set(found.locations) == where(rows, [1, 2, 3])
    for kind in ("mojibake", "control characters", "replacement characters"):
        assert kind in found.message


def test_language_mix_flags_stray_rows() -> None:
    base = clean_chat()
    rows = replace(base, {
        9: chat(0, "Erkläre Vulkane, Fall 9?", "Die Vulkane sind ein wichtiges Thema, und es ist nicht einfach, "
                                              "sie mit den Kindern zu erklären, aber wir werden es versuchen."),
        19: chat(0, "Объясни вулканы?", "Вулканы выбрасывают магму из глубины земли, это очень важно."),
    })
    report = audit_records(rows)
    found = finding(report, "language_mix")
    assert set(found.locations) == where(rows, [9, 19]) and found.severity == "warning"
    assert report.stats["languages"]["en"] == 118


def test_pii() -> None:
    base = clean_chat()
    rows = replace(base, {
        4: chat(0, "Who do I contact, case 4?", "Write to jane.doe@example.org for details."),
        5: chat(0, "What number, case 5?", "Call us on +44 20 7946 0958 during office hours."),
        6: chat(0, "Which key, case 6?", "Use sk-proj-abcdefghijklmnopqrstuvwxyz123456 as your token."),
        7: chat(0, "Which year, case 7?", "It happened in 1969-07-20 and ended in 2001."),  # a date, not a phone
    })
    found = finding(audit_records(rows), "pii")
    assert set(found.locations) == where(rows, [4, 5, 6]) and found.severity == "warning"
    assert all(kind in found.message for kind in ("email", "phone", "api_key"))


def preference(row: int, prompt: str, chosen: str, rejected: str) -> Record:
    return Record("preference", Source("pref.jsonl", row, row), "preference", (Message("user", prompt),),
                  chosen=(Message("assistant", chosen),), rejected=(Message("assistant", rejected),))


def preference_set(n: int = 320) -> list[Record]:
    good = [r.messages for r in clean_chat(n, seed=5)]
    return [preference(k + 1, m[0].content, m[1].content, "I do not know, sorry.") for k, m in enumerate(good)]


def test_preference_checks() -> None:
    clean = preference_set()
    assert audit_records(clean).findings == []
    p = clean[0].messages[0].content
    a, b = clean[0].chosen[0].content, clean[0].rejected[0].content
    rows = list(clean)
    rows[10] = preference(11, "Is this identical, case 10?", "Same text here.", "Same text here.")
    rows[11] = preference(12, "Is anything missing, case 11?", "A full answer to the question.", "  ")
    rows[12] = preference(13, p, b, a)  # reverses row 1
    report = audit_records(rows)
    assert finding(report, "preference_identical").locations == ("pref.jsonl:11",)
    assert finding(report, "preference_empty").locations == ("pref.jsonl:12",)
    conflict = finding(report, "preference_conflict")
    assert conflict.locations == ("pref.jsonl:13",) and "pref.jsonl:1" in conflict.message


def rag(row: int, abstain: bool) -> Record:
    answer = "Not found in context" if abstain else f"The launch happened on day {row}."
    user = f"Answer using only the context.\n\nContext:\nLog entry {row} describes a launch.\n\nQuestion: when {row}?"
    return Record("sft", Source("rag.jsonl", row, row), "rag", (Message("user", user), Message("assistant", answer)),
                  meta={"abstention": abstain})


def test_rag_needs_negatives() -> None:
    few = [rag(k, k % 20 == 0) for k in range(1, 201)]  # 5 % abstentions
    found = finding(audit_records(few), "rag_no_negatives")
    assert found.count == 24 and "5%" in found.message  # (0.15 * 200 - 10) / 0.85 -> 24 more
    enough = [rag(k, k % 5 == 0) for k in range(1, 201)]  # 20 %
    assert "rag_no_negatives" not in fired(audit_records(enough))


def test_schema_groups_errors_per_kind() -> None:
    errors = [RowError("d.jsonl", 3, "messages", "is missing (the row has: oops)", 3),
              RowError("d.jsonl", 8, "messages", "is missing (the row has: foo)", 8),
              RowError("d.jsonl", 9, "messages[1].content", "is empty", 9)]
    report = audit_records(clean_chat(), errors=errors)
    found = finding(report, "schema")
    assert found.severity == "error" and found.count == 3
    assert found.locations == ("d.jsonl:3", "d.jsonl:8", "d.jsonl:9")
    assert report.stats["schema_errors"] == {"messages: is missing (the row has: oops)": 1,
                                            "messages: is missing (the row has: foo)": 1,
                                            "messages[1].content: is empty": 1}
    skip = config_from_dict({**BASE, "on_bad_rows": "skip"})
    assert finding(audit_records(clean_chat(), config=skip, errors=errors), "schema").severity == "warning"


def by_chars(records: Sequence[Record]) -> list[int]:
    """A stand-in tokenizer: one token per word of every message."""
    return [sum(len(m.content.split()) for m in r.messages) for r in records]


def test_lengths_with_a_token_length_callable() -> None:
    base = clean_chat()
    huge = " ".join(base[0].messages[1].content for _ in range(30))
    rows = replace(base, {30: chat(0, "Tell me everything, case 30?", huge),
                          31: chat(0, "Tell me a lot, case 31?", " ".join([base[1].messages[1].content] * 6))})
    cfg = config_from_dict({**BASE, "sequence_len": 500})
    report = audit_records(rows, config=cfg, token_lengths=by_chars)
    assert report.stats["token_lengths_exact"] is True
    assert set(finding(report, "over_length").locations) == where(rows, [30])
    assert set(finding(report, "length_outlier").locations) == where(rows, [31])
    assert report.stats["token_lengths"]["train"]["max"] == by_chars([rows[30]])[0]
    strict = config_from_dict({**BASE, "sequence_len": 500, "truncation": "error"})
    assert finding(audit_records(rows, config=strict, token_lengths=by_chars), "over_length").severity == "error"


def test_length_mismatch_between_train_and_eval() -> None:
    train = clean_chat(100)
    long_eval = [chat(k + 1, r.messages[0].content, " ".join([r.messages[1].content] * 4), file="eval.jsonl")
                 for k, r in enumerate(clean_chat(40, seed=9))]
    found = finding(audit_records(train, long_eval, token_lengths=by_chars), "length_mismatch")
    assert "eval median" in found.message
    same = audit_records(train, clean_chat(40, "eval.jsonl", seed=9), token_lengths=by_chars)
    assert "length_mismatch" not in fired(same)


def test_skip_and_fail_on() -> None:
    rows = replace(clean_chat(), {3: chat(0, "Anything, case 3?", "")})
    report = audit_records(rows)
    assert report.fails("error") and report.fails("warning") and not report.fails("never")
    with pytest.raises(AuditFailed, match="empty_response"):
        report.enforce("error")
    skipping = config_from_dict({**BASE, "audit": {"skip": ["empty_response"]}})
    quiet = audit_records(rows, config=skipping)
    assert "empty_response" not in fired(quiet) and not quiet.fails("warning")
    assert quiet.stats["skipped_checks"]["empty_response"] == "skipped (audit.skip)"
    with pytest.raises(ConfigError, match="unknown check"):
        audit_records(rows, config=config_from_dict({**BASE, "audit": {"skip": ["empty_responses"]}}))
