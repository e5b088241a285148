"""An output folder (a merge, an export) replaced only by a complete result that passed its check.

The folder that was there before is set aside (``.<name>.previous-<pid>``), not deleted, while the new one is
written under the real name (the files inside it may name their own paths: a launch script, a manifest). An
error gives the previous folder back and deletes the new one; a result that fails its check is kept at
``<name>.failed`` for inspection, under a name nothing loads by default, and the previous folder comes back too.

    with Replacing(out) as replacing:
        ...write into out, check it...
        where = replacing.finish(passed)  # out, or <out>.failed
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any


class Replacing:
    """``out`` replaced by what the block writes into it, once ``finish`` says it passed."""

    def __init__(self, out: Path):
        self.out = out
        self.previous: Path | None = None

    def __enter__(self) -> Replacing:
        if self.out.exists():
            self.previous = self.out.with_name(f".{self.out.name}.previous-{os.getpid()}")
            shutil.rmtree(self.previous, ignore_errors=True)
            self.out.rename(self.previous)
        self.out.mkdir(parents=True)
        return self

    def finish(self, passed: bool) -> Path:
        """Where the result is now: ``out`` (the previous folder goes), else ``<out>.failed`` (it comes back)."""
        if passed:
            if self.previous is not None:
                shutil.rmtree(self.previous, ignore_errors=True)
            return self.out
        failed = self.out.with_name(self.out.name + ".failed")
        shutil.rmtree(failed, ignore_errors=True)
        self.out.rename(failed)
        self._give_back()
        return failed

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is not None:  # an error before finish: the half-written result goes, the previous one comes back
            shutil.rmtree(self.out, ignore_errors=True)
            self._give_back()

    def _give_back(self) -> None:
        if self.previous is not None:
            self.previous.rename(self.out)
