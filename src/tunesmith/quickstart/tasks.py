"""The quickstart's demo tasks, generated with exact ground truth from ``catalogue.yaml``.

Three tasks (station planning answered as JSON, ticket classification, grounded QA over a
spec sheet with abstentions). Every example has a ``key`` naming what it is about; a stable
hash of the key puts it in the held-out pool (validation + test) or the training pool
(training rows and the base model's pretraining corpus), so no test item is ever trained on,
not even by the base, whatever the sizes asked for.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from importlib import resources
from typing import Any

import yaml

TASKS = ("planning", "tickets", "qa")
HELD_OUT_PERCENT = 20


@cache
def catalogue() -> dict[str, Any]:
    """The generators' vocabulary (``catalogue.yaml``)."""
    text = (resources.files("tunesmith.quickstart") / "catalogue.yaml").read_text("utf-8")
    return yaml.safe_load(text)


@dataclass(frozen=True)
class Example:
    """One task example: the user's request and its exact answer."""

    task: str
    user: str
    answer: str
    key: str
    facts: tuple[tuple[str, Any], ...] = ()


def held_out(key: str) -> bool:
    """Whether ``key`` belongs to the held-out pool (stable across runs and sizes)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100 < HELD_OUT_PERCENT


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


def draw_plan(rng: random.Random) -> Plan:
    cat = catalogue()["planning"]
    while True:
        station, part, parts = rng.choice(cat["stations"])
        shifts, hours = rng.choice(cat["shifts"])
        plan = Plan(station, part, parts, rng.choice(cat["demand_per_day"]), shifts, hours,
                    rng.choice(cat["cycle_time_sec"]))
        if plan.machines <= cat["max_machines"]:
            return plan


def shift_text(rng: random.Random, shifts: int, hours: int) -> str:
    words = {1: "one", 2: "two", 3: "three"}
    if shifts == 1:
        return rng.choice([f"{hours} hr shift", f"one {hours}-hour shift", f"1 shift of {hours} hours"])
    return rng.choice([f"{words[shifts]} {hours}-hour shifts", f"{shifts} shifts of {hours} hours",
                       f"{shifts} x {hours} hr shifts"])


def cycle_text(rng: random.Random, seconds: int) -> str:
    forms = [f"{seconds} seconds", f"{seconds} s"]
    if seconds % 60 == 0:
        minutes = seconds // 60
        forms += [f"{minutes} minute" + ("s" if minutes > 1 else "")] * 2
    return rng.choice(forms)


def planning(rng: random.Random) -> Iterator[Example]:
    cat = catalogue()["planning"]
    while True:
        plan = draw_plan(rng)
        request = rng.choice(cat["requests"]).format(
            station=plan.station, part=plan.part, parts=plan.parts, demand=plan.demand,
            shift_text=shift_text(rng, plan.shifts, plan.hours), cycle_text=cycle_text(rng, plan.cycle))
        request = request[0].upper() + request[1:]
        key = f"plan|{plan.station}|{plan.demand}|{plan.shifts}x{plan.hours}|{plan.cycle}"
        yield Example("planning", request, json.dumps(plan.answer()), key, tuple(vars(plan).items()))


# --- ticket classification -------------------------------------------------------------------

_GREETINGS = ("", "Hi, ", "Hello team, ", "Urgent: ", "Good morning. ", "Hey, ")
_CLOSINGS = ("", " Thanks.", " Regards, Ana", " Thank you!", " Best, Tom", " Please help.")


def tickets(rng: random.Random) -> Iterator[Example]:
    cat = catalogue()["tickets"]
    while True:
        label = rng.choice(cat["labels"])
        body = rng.choice(cat["templates"][label])
        fill = {name: rng.choice(values) for name, values in cat["fill"].items()}
        body = body.format(**fill)
        text = rng.choice(_GREETINGS) + body[0].upper() + body[1:] + rng.choice(_CLOSINGS)
        # keyed by the body: the same complaint with another greeting is the same example
        yield Example("tickets", f"Ticket: {text}", label, f"ticket|{body.lower()}", (("label", label), ("body", body)))


# --- grounded QA over a spec sheet -----------------------------------------------------------


def spec_sheet(rng: random.Random) -> tuple[str, str, dict[str, str], list[str]]:
    """(machine, kind, {field: value} listed on the sheet, fields left off the sheet)."""
    cat = catalogue()["qa"]
    low, high = cat["fields_per_sheet"]
    names = list(cat["fields"])
    listed = rng.sample(names, rng.randint(low, high))
    values = {name: rng.choice(cat["fields"][name]["values"]) for name in listed}
    return rng.choice(cat["machines"]), rng.choice(cat["kinds"]), values, [n for n in names if n not in listed]


def sheet_text(machine: str, kind: str, values: dict[str, str]) -> str:
    fields = catalogue()["qa"]["fields"]
    lines = [f"{machine} {kind}"] + [f"{fields[name]['label']}: {value}" for name, value in values.items()]
    return "\n".join(lines)


def qa(rng: random.Random) -> Iterator[Example]:
    cat = catalogue()["qa"]
    while True:
        machine, kind, values, missing = spec_sheet(rng)
        abstain = rng.random() < cat["abstention_rate"]
        asked = rng.choice(missing) if abstain else rng.choice(list(values))
        question = rng.choice(cat["fields"][asked]["questions"])
        sheet = sheet_text(machine, kind, values)
        answer = cat["abstention"] if abstain else values[asked]
        key = "qa|" + sheet.replace("\n", "|")  # the whole sheet is held out or not, whatever is asked
        facts = (("machine", machine), ("kind", kind), ("values", tuple(values.items())),
                 ("missing", tuple(missing)), ("asked", asked), ("abstain", abstain))
        yield Example("qa", f"Spec sheet:\n{sheet}\n\nQuestion: {question}", answer, key, facts)


GENERATORS: dict[str, Callable[[random.Random], Iterator[Example]]] = {
    "planning": planning, "tickets": tickets, "qa": qa,
}


def draw(task: str, count: int, seed: int, pool: str, max_tries: int = 200_000, distinct: bool = True) -> list[Example]:
    """``count`` examples of ``task`` from ``pool`` ("train" or "held_out"), distinct by key unless not ``distinct``."""
    rng = random.Random(f"{task}:{seed}")
    seen: set[str] = set()
    out: list[Example] = []
    for tries, example in enumerate(GENERATORS[task](rng)):
        if len(out) == count:
            break
        if tries >= max_tries:
            raise RuntimeError(f"{task}: only {len(out)} distinct {pool} examples after {max_tries} draws")
        if (distinct and example.key in seen) or held_out(example.key) != (pool == "held_out"):
            continue
        seen.add(example.key)
        out.append(example)
    return out


def splits(sizes: dict[str, tuple[int, int, int]], seed: int) -> dict[str, dict[str, list[Example]]]:
    """``{split: {task: examples}}`` for ``sizes[task] = (train, validation, test)``; no overlap."""
    out: dict[str, dict[str, list[Example]]] = {"train": {}, "validation": {}, "test": {}}
    for task, (n_train, n_val, n_test) in sizes.items():
        out["train"][task] = draw(task, n_train, seed, "train")
        held = draw(task, n_val + n_test, seed, "held_out")
        out["test"][task], out["validation"][task] = held[:n_test], held[n_test:]
    return out


def system_prompt() -> str:
    return str(catalogue()["system_prompt"]).strip()
