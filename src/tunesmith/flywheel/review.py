"""The review step: walk a queue in the terminal, or import one edited by hand.

``walk(path, answer)`` goes through the items without a verdict, highest priority first, and
asks ``answer(item)`` for one of ``Answer``: accept the model's reply, a correction, reject, skip,
or quit. The queue file is rewritten (atomically) after every answer, so quitting or a crash
loses nothing. ``import_queue`` validates an edited queue and writes ``reviewed.jsonl`` with the
valid items; the malformed lines are returned, each naming file:line and field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import RowError, TunesmithError
from tunesmith.flywheel import files, queue


@dataclass(frozen=True)
class Answer:
    action: str  # accept | correct | reject | skip | quit
    correction: str | None = None
    note: str | None = None


@dataclass
class WalkResult:
    path: Path
    answered: dict[str, int]
    remaining: int


def walk(path: Path, answer: Callable[[dict[str, Any]], Answer]) -> WalkResult:
    """Ask for a verdict on every unreviewed item of a JSONL queue; save after each answer."""
    path = Path(path)
    if path.suffix.lower() != ".jsonl":
        raise TunesmithError(f"{path}: the walk-through edits a queue.jsonl (edit a CSV queue in a spreadsheet "
                             "and import it with --import)")
    reviewed = queue.load(path)
    if reviewed.errors:
        raise TunesmithError("\n".join([f"{path}: fix these lines first:", *map(str, reviewed.errors[:20])]))
    items = reviewed.items
    answered = {a: 0 for a in queue.VERDICTS}
    for item in sorted((i for i in items if i["verdict"] in (None, "skip")), key=_rank):
        reply = answer(item)
        if reply.action == "quit":
            break
        if reply.action not in queue.VERDICTS:
            raise TunesmithError(f"unknown review action {reply.action!r}")
        if reply.action == "correct" and not (reply.correction or "").strip():
            raise TunesmithError("a correction needs the corrected answer")
        item.update(verdict=reply.action, correction=reply.correction if reply.action == "correct" else None,
                    note=reply.note or item.get("note"))
        answered[reply.action] += 1
        files.write_jsonl(path, items)
    remaining = sum(1 for i in items if i["verdict"] in (None, "skip"))
    return WalkResult(path, answered, remaining)


def _rank(item: dict[str, Any]) -> tuple[bool, float]:
    """Highest priority first; an item whose rank was edited away (or is not a number) comes last."""
    rank = item.get("rank")
    number = isinstance(rank, (int, float)) and not isinstance(rank, bool)
    return (not number, rank if number else 0)


@dataclass
class ImportResult:
    queue: Path
    out: Path
    items: int
    verdicts: dict[str, int]
    errors: list[RowError]


def import_queue(path: Path, out: Path | None = None) -> ImportResult:
    """Validate an edited queue (JSONL or CSV); write its valid items to ``reviewed.jsonl``."""
    reviewed = queue.load(path)
    target = Path(out) if out is not None else Path(path).parent / "reviewed.jsonl"
    if target.is_dir():  # --out names the folder reviewed.jsonl goes to
        target = target / "reviewed.jsonl"
    if reviewed.errors and target.exists() and target.resolve() == Path(path).resolve():
        raise TunesmithError("\n".join([f"{path}: fix these lines first (writing the valid items over the file "
                                         "being imported would delete them):", *map(str, reviewed.errors[:20])]))
    files.write_jsonl(target, reviewed.items)
    counts = {v: sum(1 for i in reviewed.items if i["verdict"] == v) for v in queue.VERDICTS}
    counts["unreviewed"] = sum(1 for i in reviewed.items if i["verdict"] is None)
    return ImportResult(Path(path), target, len(reviewed.items), counts, reviewed.errors)
