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


def world_size_of(folder: Path) -> int:
    """How many processes wrote this checkpoint (its marker; 1 for markers older than the field)."""
    try:
        return int(json.loads((folder / MARKER).read_text("utf-8")).get("world_size", 1))
    except (OSError, ValueError, AttributeError):
        return 1


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


def fsync_files(folder: Path) -> None:
    """Every file under ``folder`` flushed to disk (before a marker or a rename publishes them)."""
    for f in folder.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())


def mark_complete(folder: Path, step: int, world_size: int = 1, per_rank_state: bool = True) -> None:
    """Flush every file of the checkpoint, then atomically write the marker (with the number of
    processes that wrote it: a multi-process checkpoint holds one RNG state per rank)."""
    if world_size > 1 and per_rank_state:
        missing = [r for r in range(world_size) if not (folder / f"rng_state_{r}.pth").is_file()]
        if missing:
            raise RuntimeError(f"{folder}: no RNG state of rank(s) {missing}: the checkpoint is not complete "
                               "(output_dir must be on a file system every node shares)")
    fsync_files(folder)
    tmp = folder / (MARKER + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"step": step, "time": time.time(), "world_size": world_size}))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / MARKER)
    _fsync_dir(folder)
