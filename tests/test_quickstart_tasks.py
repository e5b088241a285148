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
        assert all(tasks.held_out(k) for k in keys["validation"])
        assert not any(tasks.held_out(k) for k in keys["train"])


def test_test_split_does_not_depend_on_the_requested_sizes():
    small = tasks.splits({"tickets": (10, 2, 5)}, 7)["test"]["tickets"]
    large = tasks.splits({"tickets": (200, 2, 5)}, 7)["test"]["tickets"]
    assert small == large


def _halves(node, path=()):
    """Every (path, train list, test list) pair in the catalogue."""
    if isinstance(node, dict):
        if set(node) == {"train", "test"}:
            yield path, node["train"], node["test"]
            return
        for key, value in node.items():
            yield from _halves(value, path + (key,))


def _flat(items):
    for item in items:
        if isinstance(item, dict):
            for values in item.values():
                yield from _flat(values)
        elif isinstance(item, list):
            yield from _flat(item)
        elif item:
            yield item


def test_test_templates_and_vocabulary_are_not_the_training_ones():
    pairs = list(_halves(tasks.catalogue()))
    names = {path for path, _, _ in pairs}
    for expected in [("planning", "stations"), ("planning", "requests"), ("planning", "shift_text"),
                     ("tickets", "fill"), ("tickets", "templates", "billing"), ("qa", "machines"),
                     ("qa", "fields", "power", "questions")]:
        assert expected in names
    for path, train, test in pairs:
        shared = set(_flat([train])) & set(_flat([test]))
        assert not shared, f"{'.'.join(path)}: {sorted(shared)} in both halves"


def _norm(text):
    return " ".join(text.lower().split())


@pytest.mark.parametrize("profile", ["pretrained", "tiny", "fast"])
def test_no_test_request_or_answer_occurs_in_training_data(profile):
    from tunesmith.quickstart.base import recipe

    sizes = {t: tuple(n) for t, n in recipe()["finetune"]["profiles"][profile]["sizes"].items()}
    split = tasks.splits(sizes, recipe()["seed"])
    paraphrases = tasks.paraphrases()
    assert {t: len(v) for t, v in paraphrases.items()} == {"planning": 20, "tickets": 50, "qa": 21}
    for task in tasks.TASKS:
        train = split["train"][task]
        seen = "\n".join(_norm(e.user) + "\n" + _norm(e.answer) for e in train)
        held = split["test"][task] + paraphrases[task]
        assert len(split["test"][task]) == sizes[task][2]
        for example in held:
            assert _norm(example.user) not in seen, example.user  # no test request, not even inside a row
        if task == "planning":  # the JSON answers, not just the requests
            assert not {e.answer for e in held} & {e.answer for e in train}
            stations = {json.loads(e.answer)["station"] for e in held}
            assert not stations & {json.loads(e.answer)["station"] for e in train}
        elif task == "tickets":
            for example in held:
                assert _norm(dict(example.facts)["body"]) not in seen
        else:
            abstention = tasks.catalogue()["qa"]["abstention"]  # the one fixed answer, like a ticket's label
            trained = {e.answer for e in train} - {abstention}
            for example in held:
                sheet = example.user.split("\n\nQuestion:")[0].removeprefix("Spec sheet:\n")
                assert _norm(sheet) not in seen
                if example.answer != abstention:
                    assert example.answer in sheet  # answerable from the sheet itself
                    assert example.answer not in trained, example.answer  # and only from it


def test_pretrained_rows_end_with_their_tasks_instruction_test_wording_never_trained(tmp_path):
    from tunesmith.quickstart import workspace
    from tunesmith.quickstart.base import recipe

    files = workspace.write_data(tmp_path, "pretrained")
    wording = tasks.catalogue()["instructions"]
    weights = recipe()["finetune"]["profiles"]["pretrained"]["loss_weights"]
    trained = []
    for split, per_task in files.items():
        for task, path in per_task.items():
            rows = [json.loads(line)["messages"] for line in path.read_text("utf-8").splitlines()]
            half = "train" if split in ("train", "validation") else "test"
            for user, answer in rows:
                assert any(user["content"].endswith("\n\n" + w) for w in wording[task][half]), user["content"]
                assert answer.get("loss_weight") == (weights.get(task) if half == "train" else None)
            if split == "train":
                trained += [_norm(user["content"]) for user, _ in rows]
    seen = "\n".join(trained)
    for task, halves in wording.items():
        assert not set(halves["train"]) & set(halves["test"])
        for text in halves["test"]:
            assert _norm(text) not in seen


def test_paraphrase_answers_are_exact():
    plans = tasks.paraphrases()["planning"]
    first = json.loads(plans[0].answer)  # 480 springs/day, one 8-hour shift, 2 minutes each
    assert first == {"station": "shot peening", "takt_time_sec": 60, "cycle_time_sec": 120,
                     "machines_required": 2, "utilization_pct": 100, "bottleneck": True}
    for example in plans:
        assert json.loads(example.answer)["station"] in example.user.lower()
    labels = [e.answer for e in tasks.paraphrases()["tickets"]]
    assert {label: labels.count(label) for label in set(labels)} == {l: 10 for l in tasks.catalogue()["tickets"]["labels"]}


def test_pretraining_corpus_never_contains_held_out_items():
    held = tasks.splits({"planning": (0, 0, 60), "tickets": (0, 0, 60), "qa": (0, 0, 60)}, 7)["test"]
    for task, rows in tasks.paraphrases().items():
        held[task] = held[task] + rows
    docs = "\n".join(str(d) for d in corpus.documents({"planning": 600, "tickets": 600, "qa": 600, "chat": 20}, 7))
    for example in held["tickets"]:  # not even with another greeting or sign-off
        body = dict(example.facts)["body"]
        assert body[0].upper() + body[1:] not in docs
    for example in held["qa"]:
        sheet = example.user.split("\n\nQuestion:")[0].removeprefix("Spec sheet:\n")
        assert sheet + "\n\n" not in docs
    for example in held["planning"]:
        assert json.loads(example.answer)["station"] not in docs


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


@pytest.mark.parametrize("task", sorted(tasks.GENERATORS))
def test_generated_requests_never_repeat_a_word(task):
    """A template's own word and a fill that starts with it ("stuck since {time}" + "since
    Tuesday") once wrote "since since" into training and test tickets."""
    import re

    twice = re.compile(r"\b(\w+) \1\b", re.IGNORECASE)
    for pool in tasks.POOLS:
        rows = tasks.draw(task, 250, 7, pool)
        assert not [e.user for e in rows if twice.search(e.user)], f"{task} {pool}"
