"""The Evaluate page's data: eval folders under the root, two evaluations side by side, the gate.

Reads what ``tunesmith evaluate`` and ``tunesmith gate`` wrote (``eval_<name>.json``,
``generations_<name>.jsonl``, ``gate.json``) through the evaluate report's own readers, so the
page and ``report.html`` show the same numbers. A file those readers cannot take (a torn
``eval_<name>.json``, a torn line of ``generations_<name>.jsonl``, a file of another shape) is an
error naming the file (and line) for the page to show, checked here before they read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.evaluate.output import generations_path
from tunesmith.evaluate.report import Side, charts, confusions, load_side, metric_rows
from tunesmith.reporting.view import confusion_entries, metric_entries
from tunesmith.ui.runs import parse_json, read_text

FILTERS = {
    "all": lambda pair: True,
    "regressions": lambda pair: pair["drop"] > 0,
    "failures": lambda pair: not pair["right"].get("correct"),
}


def folders(root: Path) -> list[str]:
    """Folders under ``root`` holding at least one ``eval_<name>.json`` (relative, sorted)."""
    found = {p.parent for p in root.rglob("eval_*.json")} if root.is_dir() else set()
    return sorted(p.relative_to(root).as_posix() or "." for p in found)


def names(folder: Path) -> list[str]:
    """The evaluation names in a folder (``eval_base.json`` -> ``base``)."""
    return sorted(p.stem[len("eval_"):] for p in folder.glob("eval_*.json"))


def resolve(root: Path, name: str) -> Path:
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()) or not names(path):
        raise TunesmithError(f"no evaluation folder named {name!r} under {root}")
    return path


def default_pair(available: list[str]) -> tuple[str | None, str]:
    """(reference, candidate): 'base'/'baseline' against the other one when there are two or more."""
    refs = [n for n in available if n in ("base", "baseline")]
    left = refs[0] if refs else (available[0] if len(available) > 1 else None)
    others = [n for n in available if n != left]
    return left, others[-1] if others else available[0]


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return row["task"], row.get("source"), row["prompt"]


def pairs(left: Side | None, right: Side) -> list[dict[str, Any]]:
    """Every candidate row with the reference's row for the same prompt; ``drop`` = score fall (>0: a regression)."""
    before = {_key(r): r for r in left.rows} if left else {}
    out = []
    for r in right.rows:
        b = before.get(_key(r))
        drop = 0.0
        if b is not None and b.get("score") is not None and r.get("score") is not None:
            drop = float(b["score"]) - float(r["score"])
        out.append({"task": r["task"], "category": r.get("category"), "prompt": r["prompt"], "gold": r.get("gold"),
                    "left": b or {}, "right": r, "drop": drop})
    return out


def view(folder: Path, left_name: str | None, right_name: str, flt: str = "all", task: str = "",
         limit: int = 50) -> dict[str, Any]:
    """Everything the Evaluate page renders for ``right_name`` against ``left_name``."""
    if flt not in FILTERS:
        raise TunesmithError(f"filter: must be one of {', '.join(FILTERS)} (got {flt!r})")
    available = names(folder)
    for n in (left_name, right_name):
        if n is not None and n not in available:
            raise TunesmithError(f"{folder}: no evaluation named {n!r} (found: {', '.join(available)})")
    left = side(folder, left_name) if left_name else None
    right = side(folder, right_name)
    try:
        metrics, health = metric_rows(left, right)
        rows = [p for p in pairs(left, right) if FILTERS[flt](p) and (not task or p["task"] == task)]
        if flt == "regressions":
            rows.sort(key=lambda p: -p["drop"])
        out = {"left": left_name, "right": right_name, "names": available, "metrics": metric_entries(metrics),
               "health": metric_entries(health), "charts": charts(left, right),
               "confusions": confusion_entries(confusions(left, right)), "rows": rows[:limit],
               "shown_of": len(rows), "tasks": sorted(right.summary["tasks"]), "filter": flt, "task": task}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a field missing or of another type
        files = " and ".join(f"eval_{n}.json" for n in (left_name, right_name) if n)
        raise TunesmithError(f"{folder}: {files} not in the shape tunesmith evaluate writes "
                             f"({type(exc).__name__}: {exc})") from None
    return {**out, "gate": gate(folder)}


def side(folder: Path, name: str) -> Side:
    """``eval_<name>.json`` and its generations through the report's reader, once both were checked
    to be what it takes (a JSON object with ``tasks``; one JSON object per generations line)."""
    path = folder / f"eval_{name}.json"
    summary = parse_json(read_text(path), str(path))
    if not isinstance(summary, dict) or not isinstance(summary.get("tasks"), dict):
        raise TunesmithError(f"{path}: expected a JSON object with tasks (an eval_<name>.json of tunesmith evaluate)")
    gens = generations_path(path)
    lines = read_text(gens).splitlines() if gens.is_file() else []
    for number, line in enumerate(lines, 1):
        if line.strip() and not isinstance(parse_json(line, f"{gens}:{number}"), dict):
            raise TunesmithError(f"{gens}:{number}: expected a JSON object")
    try:
        return load_side(path, name)
    except (OSError, ValueError) as exc:  # changed between the check and the read
        raise TunesmithError(f"{path}: cannot be read ({exc})") from None


def gate(folder: Path) -> dict[str, Any] | None:
    """``gate.json`` of the folder (verdict, thresholds, every line), or None."""
    p = folder / "gate.json"
    if not p.is_file():
        return None
    found = parse_json(read_text(p), str(p))
    if not isinstance(found, dict):
        raise TunesmithError(f"{p}: expected a JSON object (a gate.json of tunesmith gate)")
    return found
