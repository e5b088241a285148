"""``metrics.jsonl`` across attempts: one record per step, and the whole run's train loss.

A killed attempt may have logged steps after its last complete checkpoint; the resumed attempt
trains those steps again, so they are cut from the file first (:func:`truncate`). The Trainer's
``train_loss`` averages only the steps of its own attempt; :func:`run_loss` adds the earlier ones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read(path: Path) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` (a torn last line, from a kill, is skipped)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text("utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def truncate(path: Path, step: int) -> int:
    """Keep only records at or before ``step``; returns how many were cut."""
    records = read(path)
    kept = [r for r in records if not isinstance(r.get("step"), int) or r["step"] <= step]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in kept)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return len(records) - len(kept)


def run_loss(records: list[dict[str, Any]], from_step: int, session_loss: float, session_steps: int) -> float:
    """Mean train loss over the whole run: logged losses up to ``from_step`` (each weighted by the
    steps it averages) plus this attempt's ``session_loss`` over ``session_steps``."""
    if from_step <= 0:
        return session_loss
    logged = sorted({r["step"]: r["loss"] for r in records
                     if "loss" in r and isinstance(r.get("step"), int) and r["step"] <= from_step}.items())
    total, covered, previous = 0.0, 0, 0
    for step, loss in logged:
        total += float(loss) * (step - previous)
        covered, previous = step, step
    if covered + session_steps <= 0:
        return session_loss
    return (total + session_loss * session_steps) / (covered + session_steps)
