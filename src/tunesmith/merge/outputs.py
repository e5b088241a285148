"""An output folder (a merge, an export) replaced only by a complete result that passed its check.

The folder that was there before is set aside (``.<name>.previous-<pid>``), not deleted, while the new one is
written under the real name (the files inside it may name their own paths: a launch script, a manifest). An
error, or a check that fails, gives the previous folder back; a failed result is kept at ``<name>.failed`` for
inspection, under a name nothing loads by default.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def set_aside(out: Path) -> Path | None:
    """Move an existing ``out`` aside; None when there is none."""
    if not out.exists():
        return None
    previous = out.with_name(f".{out.name}.previous-{os.getpid()}")
    shutil.rmtree(previous, ignore_errors=True)
    out.rename(previous)
    return previous


def give_back(out: Path, previous: Path | None, keep_failed: bool) -> Path | None:
    """Undo a failed result: it moves to ``<out>.failed`` (``keep_failed``, returned) or is deleted, and the
    previous folder returns to ``out``."""
    failed = out.with_name(out.name + ".failed") if keep_failed else None
    if failed is not None:
        shutil.rmtree(failed, ignore_errors=True)
        out.rename(failed)
    else:
        shutil.rmtree(out, ignore_errors=True)
    if previous is not None:
        previous.rename(out)
    return failed


def settle(previous: Path | None) -> None:
    """The new result passed: the previous folder goes."""
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
