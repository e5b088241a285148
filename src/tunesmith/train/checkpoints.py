"""Checkpoints that never look complete when they are not: write, mark complete, then rotate.

transformers' own rotation (``save_total_limit``) runs inside the save, before tunesmith can
mark the new checkpoint complete: with ``save_total_limit: 1`` a kill in between left no
complete checkpoint at all. The Trainer therefore gets ``save_total_limit=None`` and
:class:`tunesmith.train.callbacks.CompletionMarker` rotates after marking: an old checkpoint is unmarked (so a kill
half-way through deleting it leaves a folder that is discarded, not resumed) and then deleted,
only once the new one is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

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


def step_of(path: Path) -> int:
    """The global step a ``checkpoint-N`` folder was saved at (-1 when the name has none)."""
    return _step(path)


def rotate(root: Path, limit: int | None, best: str | None = None) -> list[Path]:
    """Delete the oldest complete checkpoints beyond ``limit``, never the newest one or ``best``."""
    if not limit:
        return []
    done = complete_checkpoints(root)
    protected = {done[-1].resolve()} if done else set()
    if best:
        protected.add(Path(best).resolve())
    keep = max(limit, len(protected))
    removed = []
    for path in done:
        if len(done) - len(removed) <= keep:
            break
        if path.resolve() in protected:
            continue
        unmark(path)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def unmark(folder: Path) -> None:
    """Make a checkpoint incomplete (durably) before deleting any of its files."""
    (folder / MARKER).unlink(missing_ok=True)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def mark_complete(folder: Path, step: int) -> None:
    """Flush every file of the checkpoint, then atomically write the marker."""
    for f in folder.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    tmp = folder / (MARKER + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"step": step, "time": time.time()}))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / MARKER)
    _fsync_dir(folder)
