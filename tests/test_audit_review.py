"""Defects found by a review of the audit: each planted defect is found, each clean row stays unflagged."""

from __future__ import annotations

import json
from pathlib import Path

from audit_rows import chat, clean_chat, finding, fired, replace, where
from conftest import run_cli
from test_audit_cli import rows_of, write

from tunesmith.audit import audit_records
from tunesmith.audit.contamination import training_rows_in
from tunesmith.data.records import Message, Record, Source


def _near_copy(record: Record) -> tuple[str, str]:
    """(prompt, answer) of a near copy of ``record``: a few words added, one word changed."""
    q, a = record.messages[0].content, record.messages[1].content
    return q + " Thanks", a.replace(a.split()[3], "zebra", 1)


def test_every_copy_of_a_near_copy_in_eval_is_split_contamination() -> None:
    """Two eval rows equal up to case and punctuation, both near a training row: both are contaminated
    (the second was paired only with the first eval row and went unreported)."""
    train = clean_chat(60)
    q, a = _near_copy(train[0])
    held = replace(clean_chat(30, "eval.jsonl", seed=5),
                   {0: chat(0, q, a + "!", file="eval.jsonl"), 1: chat(0, q.upper(), a, file="eval.jsonl")})
    found = finding(audit_records(train, held), "split_contamination")
    assert set(found.locations) == where(held, [0, 1]) and found.count == 2
    assert "2 nearly" in found.message


def test_every_copy_of_a_training_row_near_an_eval_row_is_found() -> None:
    """The flywheel's decontamination: a training row and its case-changed copy, both near an eval row."""
    train = clean_chat(40)
    q, a = _near_copy(train[0])
    copy = chat(0, train[0].messages[0].content.upper(), train[0].messages[1].content.upper())
    train = [*train, copy]
    found = training_rows_in(train, [chat(1, q, a, file="eval.jsonl")], 0.85)
    assert set(found) == {0, len(train) - 1}
    assert {kind for _, kind, _ in found.values()} == {"near"}


def kto(row: int, user: str, answer: str, label: bool) -> Record:
    return Record("kto", Source("kto.jsonl", row, row), "chat", (Message("user", user), Message("assistant", answer)),
                  label=label)


def test_kto_completions_of_one_prompt_are_not_duplicates() -> None:
    """KTO data gives one prompt a desirable and an undesirable completion by design; an exact repeat
    of a whole row is still a duplicate."""
    base = clean_chat(120)
    rows = [kto(k + 1, r.messages[0].content, r.messages[1].content, k % 2 == 0) for k, r in enumerate(base)]
    for k in range(1, 120, 2):  # every odd row: the previous row's prompt, another answer, the other label
        rows[k] = kto(k + 1, rows[k - 1].messages[0].content, rows[k].messages[1].content, False)
    assert "exact_duplicate" not in fired(audit_records(rows))
    rows[5] = kto(6, rows[2].messages[0].content, rows[2].messages[1].content, True)
    found = finding(audit_records(rows), "exact_duplicate")
    assert found.locations == ("kto.jsonl:6",) and "1 repeat a whole row" in found.message


def test_list_items_and_hashtags_are_not_cut_off() -> None:
    """A reply ending in a list item or a hashtag has no sentence to finish (a set of replies ending
    in punctuation flagged them all); a list item made of sentences that stops mid-word still is."""
    base = clean_chat(120)
    clean = {
        2: "Here are three fruits you could try this week:\n1. Apple\n2. Mango\n3. Kiwi",
        4: "Fiction books in the list you gave me are these:\n- Alice in Wonderland\n- My Struggle",
        6: "Ready for takeoff! Explore the world beyond your imagination and enjoy it. #travel #Wanderlust",
        8: "The final result of the calculation, step by step, is:\n10 / 5 = 2",
    }
    cut = {10: "Follow these steps to keep the model healthy:\n1. Evaluate it often. If it degrades, it may need "
               "to be retrained on fresh data and then"}
    rows = replace(base, {k: chat(0, f"Question number {k} about jazz harmony?", v) for k, v in {**clean, **cut}.items()})
    found = finding(audit_records(rows), "truncated_response")
    assert set(found.locations) == where(rows, list(cut))


def test_an_ip_address_is_not_a_phone_number() -> None:
    rows = replace(clean_chat(120), {
        3: chat(0, "Which address does the router use, case 3?", "The router answers on 192.168.100.200 by default."),
        5: chat(0, "How do I reach support, case 5?", "Call our support line at 555-123-4567 on weekdays."),
    })
    found = finding(audit_records(rows), "pii")
    assert set(found.locations) == where(rows, [5]) and "1 with phone" in found.message


def test_html_to_a_missing_folder_is_a_one_line_error(tmp_path: Path) -> None:
    data = write(tmp_path / "small.jsonl", rows_of(30, seed=3))
    result = run_cli("audit", str(data), "--html", str(tmp_path / "no" / "audit.html"))
    assert result.returncode == 1 and "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert f"--html: cannot write {tmp_path / 'no' / 'audit.html'}" in result.stderr


def test_a_model_that_does_not_load_is_named_in_the_skip_reasons(tmp_path: Path) -> None:
    """--model given but not loadable: the skipped token checks say so, not 'pass --model'."""
    data = write(tmp_path / "small.jsonl", rows_of(30, seed=3))
    result = run_cli("audit", str(data), "--model", str(tmp_path / "no-such-model"), "--json")
    assert result.returncode == 0, result.stderr
    skipped = json.loads(result.stdout)["stats"]["skipped_checks"]
    assert set(skipped) == {"missing_eos", "template_error", "over_length"}
    assert all("tokenizer did not load" in why and "no-such-model" in why for why in skipped.values())
    assert not any("pass --model" in why for why in skipped.values())


def test_kto_refusals_labelled_undesirable_are_not_taught() -> None:
    """KTO refusals labelled undesirable teach the model not to refuse: they are no refusal share;
    the same refusals labelled desirable are."""
    base = clean_chat(100)
    rows = [kto(k + 1, r.messages[0].content, r.messages[1].content, True) for k, r in enumerate(base)]
    for k in range(0, 100, 10):
        rows[k] = kto(k + 1, rows[k].messages[0].content, "I'm sorry, but I can't help with that.", False)
    assert "refusal_share" not in fired(audit_records(rows))
    taught = [kto(r.source.row, r.messages[0].content, r.messages[1].content, True) for r in rows]
    found = finding(audit_records(taught), "refusal_share")
    assert found.count == 10 and "10 of 100 training replies" in found.message
