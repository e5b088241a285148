"""The demo tasks: exact ground truth, a clean held-out split, and a corpus that never sees it."""

from __future__ import annotations

import json
import random

import pytest

from tunesmith.quickstart import corpus, tasks
from tunesmith.quickstart.tasks import Plan


def test_plan_answer_is_exact():
    # the seed's example: 500 gears/day, one 8 hr shift, 4 minutes per gear
    plan = Plan("gear hobbing", "gear", "gears", demand=500, shifts=1, hours=8, cycle=240)
    assert plan.answer() == {"station": "gear hobbing", "takt_time_sec": 57.6, "cycle_time_sec": 240,
                             "machines_required": 5, "utilization_pct": 83.3, "bottleneck": False}


def test_plan_exact_division_needs_no_extra_machine():
    plan = Plan("drilling", "flange", "flanges", demand=480, shifts=1, hours=8, cycle=120)  # takt 60 s
    assert plan.answer()["machines_required"] == 2
    assert plan.answer()["utilization_pct"] == 100
    assert plan.answer()["bottleneck"] is True


def test_planning_requests_state_the_numbers_the_answer_uses():
    example = next(tasks.planning(random.Random(3)))
    facts = dict(example.facts)
    answer = json.loads(example.answer)
    assert facts["station"].lower() in example.user.lower() and str(facts["demand"]) in example.user
    assert answer["cycle_time_sec"] == facts["cycle"]
    assert answer["takt_time_sec"] == pytest.approx(facts["shifts"] * facts["hours"] * 3600 / facts["demand"], abs=0.05)


def test_splits_are_disjoint_sized_and_deterministic():
    sizes = {"planning": (40, 5, 10), "tickets": (40, 5, 10), "qa": (30, 4, 8)}
    first, second = tasks.splits(sizes, 7), tasks.splits(sizes, 7)
    assert first == second
    for task, (n_train, n_val, n_test) in sizes.items():
        keys = {split: {e.key for e in first[split][task]} for split in first}
        assert (len(keys["train"]), len(keys["validation"]), len(keys["test"])) == (n_train, n_val, n_test)
        assert not keys["train"] & keys["test"] and not keys["train"] & keys["validation"]
        assert not keys["validation"] & keys["test"]
        assert all(tasks.held_out(k) for k in keys["test"] | keys["validation"])
        assert not any(tasks.held_out(k) for k in keys["train"])


def test_test_split_does_not_depend_on_the_requested_sizes():
    small = tasks.splits({"tickets": (10, 2, 5)}, 7)["test"]["tickets"]
    large = tasks.splits({"tickets": (200, 2, 5)}, 7)["test"]["tickets"]
    assert small == large


def test_pretraining_corpus_never_contains_held_out_items():
    held = tasks.splits({"tickets": (0, 0, 60), "qa": (0, 0, 60)}, 7)["test"]
    docs = "\n".join(str(d) for d in corpus.documents({"tickets": 600, "qa": 600, "chat": 20}, 7))
    for example in held["tickets"]:  # not even with another greeting or sign-off
        body = dict(example.facts)["body"]
        assert body[0].upper() + body[1:] not in docs
    for example in held["qa"]:
        sheet = example.user.split("\n\nQuestion:")[0].removeprefix("Spec sheet:\n")
        assert sheet + "\n\n" not in docs


def test_tickets_cover_every_label_and_qa_abstains_at_the_seeds_rate():
    labels = tasks.catalogue()["tickets"]["labels"]
    drawn = tasks.draw("tickets", 300, 1, "train")
    assert {e.answer for e in drawn} == set(labels)
    qa = tasks.draw("qa", 1000, 1, "train")
    abstain = sum(e.answer == tasks.catalogue()["qa"]["abstention"] for e in qa) / len(qa)
    assert 0.15 <= abstain <= 0.21
    for e in qa:
        if e.answer != tasks.catalogue()["qa"]["abstention"]:
            assert e.answer in e.user  # answerable rows are answered from the sheet
