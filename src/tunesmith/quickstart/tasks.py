"""The quickstart's demo tasks, generated with exact ground truth from ``catalogue.yaml``.

Three tasks (station planning answered as JSON, ticket classification, grounded QA over a
spec sheet with abstentions). Held out means held out: the test split is written from the
catalogue's ``test`` templates and vocabulary, which no training row uses (new stations,
request templates, ticket templates and fillers, machines and question forms). Training and
validation rows come from the ``train`` side; every example has a ``key`` naming what it is
about, and a stable hash of the key puts it in the validation pool or the training pool (which
also feeds the embedded base's pretraining corpus). ``paraphrases.yaml`` is a hand-written
third test set.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import cache
from importlib import resources
from typing import Any

from tunesmith.config.yaml_load import load_table

TASKS = ("planning", "tickets", "qa")
POOLS = ("train", "validation", "test")
HELD_OUT_PERCENT = 20  # share of train-side keys kept for validation


@cache
def catalogue() -> dict[str, Any]:
    """The generators' vocabulary (``catalogue.yaml``)."""
    text = (resources.files("tunesmith.quickstart") / "catalogue.yaml").read_text("utf-8")
    return load_table(text)


@dataclass(frozen=True)
class Example:
    """One task example: the user's request and its exact answer."""

    task: str
    user: str
    answer: str
    key: str
    facts: tuple[tuple[str, Any], ...] = ()


def held_out(key: str) -> bool:
    """Whether a train-side ``key`` belongs to the validation pool (stable across runs and sizes)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100 < HELD_OUT_PERCENT


def side(pool: str) -> str:
    """Which half of the catalogue a pool is written from: ``test`` for the test split, else ``train``."""
    return "test" if pool == "test" else "train"


# --- station planning ------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    station: str
    part: str
    parts: str
    demand: int
    shifts: int
    hours: int
    cycle: int

    @property
    def available(self) -> int:
        return self.shifts * self.hours * 3600

    @property
    def machines(self) -> int:
        return math.ceil(Fraction(self.cycle * self.demand, self.available))

    def answer(self) -> dict[str, Any]:
        takt = Fraction(self.available, self.demand)
        util = 100 * Fraction(self.cycle, 1) / (self.machines * takt)
        limit = catalogue()["planning"]["bottleneck_at_utilization_pct"]
        return {
            "station": self.station,
            "takt_time_sec": _number(takt),
            "cycle_time_sec": self.cycle,
            "machines_required": self.machines,
            "utilization_pct": _number(util),
            "bottleneck": bool(util >= limit),
        }


def _number(value: Fraction) -> int | float:
    rounded = round(float(value), 1)
    return int(rounded) if rounded == int(rounded) else rounded


def draw_plan(rng: random.Random, half: str = "train") -> Plan:
    cat = catalogue()["planning"]
    while True:
        station, part, parts = rng.choice(cat["stations"][half])
        shifts, hours = rng.choice(cat["shifts"])
        plan = Plan(station, part, parts, rng.choice(cat["demand_per_day"]), shifts, hours,
                    rng.choice(cat["cycle_time_sec"]))
        if plan.machines <= cat["max_machines"]:
            return plan


def shift_text(rng: random.Random, shifts: int, hours: int, half: str = "train") -> str:
    forms = catalogue()["planning"]["shift_text"][half]["one" if shifts == 1 else "many"]
    words = {1: "one", 2: "two", 3: "three"}
    return rng.choice(forms).format(shifts=shifts, hours=hours, shifts_word=words[shifts])


def cycle_text(rng: random.Random, seconds: int, half: str = "train") -> str:
    forms = catalogue()["planning"]["cycle_text"][half]
    options = [f.format(seconds=seconds) for f in forms["seconds"]]
    if seconds % 60 == 0:
        minutes = seconds // 60
        unit = "minute" + ("s" if minutes > 1 else "")
        options += [f.format(minutes=minutes, minutes_unit=unit) for f in forms["minutes"]] * 2
    return rng.choice(options)


def answer_json(answer: dict[str, Any]) -> str:
    """The reply as compact JSON (no spaces: fewer tokens to train and generate)."""
    return json.dumps(answer, separators=(",", ":"))


def plan_example(plan: Plan, request: str) -> Example:
    """A planning example; keyed by its exact answer, so equal answers never straddle two pools."""
    answer = answer_json(plan.answer())
    return Example("planning", request, answer, f"plan|{answer}", tuple(vars(plan).items()))


def planning(rng: random.Random, half: str = "train") -> Iterator[Example]:
    cat = catalogue()["planning"]
    while True:
        plan = draw_plan(rng, half)
        request = rng.choice(cat["requests"][half]).format(
            station=plan.station, part=plan.part, parts=plan.parts, demand=plan.demand,
            shift_text=shift_text(rng, plan.shifts, plan.hours, half), cycle_text=cycle_text(rng, plan.cycle, half))
        yield plan_example(plan, request[0].upper() + request[1:])


# --- ticket classification -------------------------------------------------------------------

# a `time` fill that starts with "since" after a template's own "since" ("stuck since {time}")
_SINCE_TWICE = re.compile(r"\b(since) since\b", re.IGNORECASE)


def tickets(rng: random.Random, half: str = "train") -> Iterator[Example]:
    cat = catalogue()["tickets"]
    while True:
        label = rng.choice(cat["labels"])
        body = rng.choice(cat["templates"][label][half])
        fill = {name: rng.choice(values) for name, values in cat["fill"][half].items()}
        body = _SINCE_TWICE.sub(r"\1", body.format(**fill))
        text = rng.choice(cat["greetings"][half]) + body[0].upper() + body[1:] + rng.choice(cat["closings"][half])
        yield ticket_example(text, label, body)


def ticket_example(text: str, label: str, body: str | None = None) -> Example:
    """A ticket example, keyed by its body: the same complaint with another greeting is the same example."""
    body = body or text
    return Example("tickets", f"Ticket: {text}", label, f"ticket|{body.lower()}", (("label", label), ("body", body)))


# --- grounded QA over a spec sheet -----------------------------------------------------------


def spec_sheet(rng: random.Random, half: str = "train") -> tuple[str, str, dict[str, str], list[str]]:
    """(machine, kind, {field: value} listed on the sheet, fields left off the sheet)."""
    cat = catalogue()["qa"]
    low, high = cat["fields_per_sheet"]
    names = list(cat["fields"])
    listed = rng.sample(names, rng.randint(low, high))
    values = {name: rng.choice(cat["fields"][name]["values"][half]) for name in listed}
    return (rng.choice(cat["machines"][half]), rng.choice(cat["kinds"][half]), values,
            [n for n in names if n not in listed])


def sheet_text(machine: str, kind: str, values: dict[str, str]) -> str:
    fields = catalogue()["qa"]["fields"]
    lines = [f"{machine} {kind}"] + [f"{fields[name]['label']}: {value}" for name, value in values.items()]
    return "\n".join(lines)


def qa_example(sheet: str, question: str, answer: str, facts: tuple[tuple[str, Any], ...] = ()) -> Example:
    """A QA example, keyed by its sheet: the whole sheet is held out or not, whatever is asked."""
    return Example("qa", f"Spec sheet:\n{sheet}\n\nQuestion: {question}", answer, "qa|" + sheet.replace("\n", "|"),
                   facts)


def qa(rng: random.Random, half: str = "train") -> Iterator[Example]:
    cat = catalogue()["qa"]
    while True:
        machine, kind, values, missing = spec_sheet(rng, half)
        abstain = rng.random() < cat["abstention_rate"]
        asked = rng.choice(missing) if abstain else rng.choice(list(values))
        question = rng.choice(cat["fields"][asked]["questions"][half])
        answer = cat["abstention"] if abstain else values[asked]
        facts = (("machine", machine), ("kind", kind), ("values", tuple(values.items())),
                 ("missing", tuple(missing)), ("asked", asked), ("abstain", abstain))
        yield qa_example(sheet_text(machine, kind, values), question, answer, facts)


GENERATORS: dict[str, Callable[[random.Random, str], Iterator[Example]]] = {
    "planning": planning, "tickets": tickets, "qa": qa,
}


def draw(task: str, count: int, seed: int, pool: str, max_tries: int = 200_000, distinct: bool = True) -> list[Example]:
    """``count`` examples of ``task`` from ``pool`` (see ``POOLS``), distinct by key unless not ``distinct``."""
    rng = random.Random(f"{task}:{seed}:{side(pool)}")
    seen: set[str] = set()
    out: list[Example] = []
    for tries, example in enumerate(GENERATORS[task](rng, side(pool))):
        if len(out) == count:
            break
        if tries >= max_tries:
            raise RuntimeError(f"{task}: only {len(out)} distinct {pool} examples after {max_tries} draws")
        if distinct and example.key in seen:
            continue
        if pool != "test" and held_out(example.key) != (pool == "validation"):
            continue
        seen.add(example.key)
        out.append(example)
    return out


def splits(sizes: dict[str, tuple[int, int, int]], seed: int) -> dict[str, dict[str, list[Example]]]:
    """``{split: {task: examples}}`` for ``sizes[task] = (train, validation, test)``; no overlap."""
    return {pool: {task: draw(task, counts[i], seed, pool) for task, counts in sizes.items()}
            for i, pool in enumerate(POOLS)}


@cache
def paraphrases() -> dict[str, list[Example]]:
    """The hand-written paraphrase set (``paraphrases.yaml``) as examples, per task."""
    raw = load_table((resources.files("tunesmith.quickstart") / "paraphrases.yaml").read_text("utf-8"))
    planning_rows = [plan_example(Plan(row["station"], "", "", row["demand"], row["shifts"], row["hours"], row["cycle"]),
                                  row["request"]) for row in raw["planning"]]
    ticket_rows = [ticket_example(text, label) for label, texts in raw["tickets"].items() for text in texts]
    qa_rows = [qa_example(sheet["sheet"], question, answer)
               for sheet in raw["qa"] for question, answer in sheet["questions"]]
    return {"planning": planning_rows, "tickets": ticket_rows, "qa": qa_rows}


def instructed(example: Example, half: str, rng: random.Random) -> Example:
    """``example`` with its task's instruction (``catalogue.yaml`` ``instructions``) after the
    request, in the ``half`` wording: ``train`` for the rows trained on, ``test`` for the rest."""
    instruction = rng.choice(catalogue()["instructions"][example.task][half])
    return replace(example, user=f"{example.user}\n\n{instruction}")


def system_prompt() -> str:
    return str(catalogue()["system_prompt"]).strip()
