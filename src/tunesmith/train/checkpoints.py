"""Checkpoints that never look complete when they are not: write, then mark complete."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback

MARKER = "tunesmith_complete.json"


def _step(path: Path) -> int:
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def complete_checkpoints(root: Path) -> list[Path]:
    """Checkpoints carrying the completion marker, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.glob("checkpoint-*") if (p / MARKER).is_file()]
    return sorted(found, key=_step)


def discard_incomplete(root: Path) -> list[Path]:
    """Remove checkpoint folders a kill left half-written; return what was removed."""
    if not root.is_dir():
        return []
    removed = [p for p in root.glob("checkpoint-*") if not (p / MARKER).is_file()]
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    return removed


def mark_complete(folder: Path, step: int) -> None:
    """Flush every file of the checkpoint, then atomically write the marker."""
    for f in folder.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    tmp = folder / (MARKER + ".tmp")
    tmp.write_text(json.dumps({"step": step, "time": time.time()}))
    os.replace(tmp, folder / MARKER)


class CompletionMarker(TrainerCallback):
    """Marks each checkpoint complete after the Trainer has written all of it."""

    def on_save(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            mark_complete(folder, state.global_step)
        return control
