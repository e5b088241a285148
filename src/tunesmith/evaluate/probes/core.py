"""Forgetting probes: a bundled general-capability set (``general.jsonl``: arithmetic, facts,
instruction following, format following, refusal when appropriate, no false refusal), each item
with a category and a deterministic check (``checks.py``), scored on any loaded model.

``run(loaded)`` scores one model; ``compare(base, candidate, max_drop)`` flags every category
whose accuracy fell by more than ``max_drop`` of the base's (a relative drop: 0.10 = 10 %).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from tunesmith.errors import DataError, RowError
from tunesmith.evaluate.probes.checks import CHECKS, REQUIRED

_ID = re.compile(r"^[\w.-]+$")


@dataclass(frozen=True)
class Probe:
    id: str
    category: str
    prompt: str
    check: dict[str, Any]
    line: int


@dataclass
class ProbeRow:
    id: str
    category: str
    prompt: str
    reply: str
    passed: bool
    finish_reason: str
    tokens: int


@dataclass
class ProbeResult:
    """Per-item replies and checks, accuracy overall (all items) and per category, and health."""

    path: str
    rows: list[ProbeRow]
    accuracy: float
    categories: dict[str, dict[str, float]]
    health: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "n": len(self.rows), "accuracy": self.accuracy, "categories": self.categories,
                "health": self.health}


def default_path() -> Path:
    return Path(str(files("tunesmith.evaluate.probes").joinpath("general.jsonl")))


def load(path: str | Path | None = None) -> list[Probe]:
    """The probe items of ``path`` (default: the bundled set); every bad line is reported with file:line."""
    where = Path(path) if path is not None else default_path()
    if not where.is_file():
        raise DataError([RowError(str(where), None, None, "probe file not found")])
    probes, errors, seen = [], [], set()
    for number, line in enumerate(where.read_text("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            probe = _probe(item, number)
        except (ValueError, KeyError, TypeError) as exc:
            field_name = exc.args[1] if len(exc.args) > 1 else None
            errors.append(RowError(str(where), number, field_name, str(exc.args[0]), number))
            continue
        if probe.id in seen:
            errors.append(RowError(str(where), number, "id", f"repeats an earlier id {probe.id!r}", number))
        seen.add(probe.id)
        probes.append(probe)
    if errors:
        raise DataError(errors)
    if not probes:
        raise DataError([RowError(str(where), None, None, "has no probe items")])
    return probes


_NUMBERS = {"number": ("value", "tolerance"), "number_range": ("min", "max")}  # keys a check reads as numbers


def _probe(item: Any, line: int) -> Probe:
    if not isinstance(item, dict):
        raise ValueError("must be a JSON object with id, category, prompt and check")
    for key in ("id", "category", "prompt"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise ValueError("must be a non-empty string", key)
    if not _ID.match(item["id"]):
        raise ValueError("may hold only letters, digits, '_', '-' and '.'", "id")
    check = item.get("check")
    if not isinstance(check, dict) or check.get("type") not in CHECKS:
        raise ValueError(f"must be an object whose type is one of {', '.join(CHECKS)}", "check")
    missing = [k for k in REQUIRED[check["type"]] if k not in check]
    if missing:
        raise ValueError(f"a {check['type']} check needs {', '.join(missing)}", "check")
    for key in _NUMBERS.get(check["type"], ()):
        value = check.get(key)
        if key in check and (isinstance(value, bool) or not isinstance(value, (int, float)) or value != value):
            raise ValueError(f"{key} must be a number (got {value!r})", "check")
    if check["type"] == "number_range" and check["min"] > check["max"]:
        raise ValueError(f"min {check['min']} is above max {check['max']}", "check")
    if check["type"] == "regex":
        try:
            re.compile(check["pattern"])
        except re.error as exc:
            raise ValueError(f"pattern is not a valid regular expression: {exc}", "check") from None
    return Probe(item["id"], item["category"], item["prompt"], check, line)


def run(loaded: Any, *, path: str | Path | None = None, system_prompt: str | None = None,
        max_new_tokens: int = 48, batch_size: int = 16, cache: Any = None) -> ProbeResult:
    """Score the probe set on ``loaded`` (an ``infer.Loaded``: model, tokenizer, stop ids) with
    greedy decoding in its own chat template; ``system_prompt`` defaults to the model's trained one."""
    from tunesmith import infer
    from tunesmith.data.records import Message
    from tunesmith.evaluate.scorers.base import EvalRow
    from tunesmith.evaluate.scorers.health import health

    probes = load(path)
    system = system_prompt if system_prompt is not None else loaded.system_prompt
    conversations = [[Message(role="user", content=p.prompt)] for p in probes]
    gens = infer.generate_details(loaded.model, loaded.tokenizer, conversations, eos_ids=loaded.eos_ids,
                                  system_prompt=system, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                  cache=cache)
    rows = [ProbeRow(p.id, p.category, p.prompt, g.text, CHECKS[p.check["type"]](g.text, p.check), g.finish_reason,
                     g.tokens) for p, g in zip(probes, gens)]
    categories: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(p.category for p in probes):
        mine = [r for r in rows if r.category == name]
        categories[name] = {"n": len(mine), "passed": sum(r.passed for r in mine),
                            "accuracy": sum(r.passed for r in mine) / len(mine)}
    stats = health([EvalRow(r.prompt, "", r.reply, r.finish_reason, r.tokens) for r in rows])
    stats = {k: v for k, v in stats.items() if k not in ("mean_gold_tokens", "length_ratio")}
    return ProbeResult(str(path or default_path()), rows, sum(r.passed for r in rows) / len(rows), categories, stats)


def compare(base: ProbeResult | dict[str, Any], candidate: ProbeResult | dict[str, Any],
            max_drop: float = 0.10) -> dict[str, Any]:
    """Per category (and overall): base and candidate accuracy, the relative drop
    ((base - candidate) / base; 0 when the base scored 0) and whether it exceeds ``max_drop``."""
    b = base.to_dict() if isinstance(base, ProbeResult) else base
    c = candidate.to_dict() if isinstance(candidate, ProbeResult) else candidate

    def entry(before: float, after: float) -> dict[str, Any]:
        drop = (before - after) / before if before > 0 else 0.0
        return {"base": before, "candidate": after, "drop": drop, "flagged": drop > max_drop + 1e-12}

    cats = {name: entry(b["categories"][name]["accuracy"], c["categories"].get(name, {}).get("accuracy", 0.0))
            for name in b["categories"]}
    return {"max_drop": max_drop, "overall": entry(b["accuracy"], c["accuracy"]), "categories": cats,
            "flagged": [name for name, e in cats.items() if e["flagged"]]}


def rows_jsonl(result: ProbeResult) -> list[str]:
    """One JSON line per probe item (for ``probes_<name>.jsonl``)."""
    return [json.dumps(asdict(r), ensure_ascii=False) for r in result.rows]
