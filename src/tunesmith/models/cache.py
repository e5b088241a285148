"""tunesmith's cache folder and how things are built into it without ever looking complete early.

A cached item (a built base model, a converted GGUF) is built in a hidden sibling folder named
``.<name>.building-<pid>`` and renamed into place in one step when it is finished, so a process
killed halfway leaves only a building folder, which the next run sweeps away once its process
is gone. Nothing in the cache is ever half-written under its real name.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """``$TUNESMITH_CACHE``, else ``$XDG_CACHE_HOME/tunesmith``, else ``~/.cache/tunesmith``."""
    if os.environ.get("TUNESMITH_CACHE"):
        return Path(os.environ["TUNESMITH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tunesmith"


def sweep(parent: Path) -> None:
    """Remove building folders in ``parent`` left by killed builds (their process is gone)."""
    for stale in parent.glob(".*.building-*") if parent.is_dir() else ():
        pid = stale.name.rsplit("-", 1)[1]
        if not (pid.isdigit() and pid_alive(int(pid))):
            shutil.rmtree(stale, ignore_errors=True)


def pid_alive(pid: Any) -> bool:
    """Whether process ``pid`` exists on this host (one of another user counts; a pid that is not a
    positive number is taken as alive: nothing is concluded from it). The one liveness check of a
    recorded process: a builder here, a training run (``train.resume``), a merge (``merge.outputs``)."""
    try:
        number = int(pid)
        if number > 0:
            os.kill(number, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError, OverflowError):  # someone else's process; no pid
        return True
    return True


@contextmanager
def building(folder: Path) -> Iterator[Path]:
    """A fresh hidden sibling of ``folder`` to build in; always removed when the block ends.

    Move the finished result into place with ``publish`` inside the block.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    sweep(folder.parent)
    work = folder.with_name(f".{folder.name}.building-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def discard(folder: Path) -> None:
    """Remove a damaged cached ``folder``: renamed out of the way in one step first (so no other process
    loads it meanwhile), then deleted; a folder another process removed already is fine."""
    aside = folder.with_name(f".{folder.name}.building-{os.getpid()}-discarded")
    try:
        folder.rename(aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def publish(result: Path, folder: Path, marker: str) -> bool:
    """Rename the finished ``result`` to ``folder`` in one step; False when another process
    published a complete ``folder`` (one holding ``marker``) first, which the caller then uses."""
    try:
        result.rename(folder)
    except OSError:
        if not (folder / marker).is_file():
            raise
        return False
    return True
