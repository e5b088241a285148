"""An output folder (a merge, an export) that only ever holds a complete result that passed its check.

The result is written into a sibling, ``.<name>.building-<pid>``, and checked there. Only a result that
passed is renamed into place: the folder there before is renamed to ``.<name>.old-<pid>``, the new one to
``<name>``, then the old one is deleted (two renames, as ``train/rundir.py`` replaces ``model/``). A result
that fails its check is renamed to ``<name>.failed`` for inspection, under a name nothing loads by default,
and the previous folder never moves; an error deletes the half-written result. A run killed at any point
(SIGTERM, SIGKILL, the OOM killer, a pre-emption) leaves ``<name>`` holding the previous result, or nothing
if it died between the two renames; ``recover`` (run by the next ``Replacing`` of the same folder, and by
export before it reads a run's ``merged/``) puts the previous result back and deletes what is left over.

Files that name their own folder (a launch script, an export manifest) name ``replacing.named``, where the
result will be, not the folder it is built in.

    with Replacing(out) as replacing:
        ...write into replacing.building, check it there...
        where = replacing.finish(passed)  # out, or <out>.failed
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.models.cache import pid_alive
from tunesmith.train.checkpoints import fsync_files

# building: a result not (yet) checked; old: the previous result while the new one is renamed into place;
# previous: the previous result set aside by versions that wrote the new one under <name> itself
KINDS = ("building", "old", "previous")


class Replacing:
    """``out`` replaced by what the block writes into ``building``, once ``finish`` says it passed."""

    def __init__(self, out: Path):
        refuse_cwd(out)
        self.given = Path(out)
        self.out = Path(os.path.abspath(out))  # renamed by its full name: a relative one may end in '.' or '..'
        self.building = self._sibling("building")

    @property
    def named(self) -> Path:
        """Where a passing result will be, as the caller named it."""
        return self._shown(self.out)

    def destination(self, passed: bool) -> Path:
        """Where ``finish(passed)`` will put the result, as the caller named it."""
        return self._shown(self.out if passed else self._failed())

    def __enter__(self) -> Replacing:
        recover(self.out)
        _remove(self.building)
        self.building.mkdir(parents=True)
        return self

    def finish(self, passed: bool) -> Path:
        """Where the result is now: ``out`` (the previous folder goes), else ``<out>.failed`` (it stays)."""
        fsync_files(self.building)  # every file on disk before the rename that publishes them
        if not passed:
            _remove(self._failed())
            os.replace(self.building, self._failed())
            return self.destination(False)
        old = self._sibling("old")
        if self.out.exists() or self.out.is_symlink():
            os.replace(self.out, old)
        os.replace(self.building, self.out)
        _remove(old)
        return self.named

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is not None:  # an error before finish: the half-written result goes, the previous one never moved
            _remove(self.building)

    def _sibling(self, kind: str) -> Path:
        return self.out.with_name(f".{self.out.name}.{kind}-{os.getpid()}")

    def _failed(self) -> Path:
        return self.out.with_name(self.out.name + ".failed")

    def _shown(self, path: Path) -> Path:
        return path if self.given.name in ("", ".", "..") else self.given.with_name(path.name)


def refuse_cwd(out: Path) -> None:
    """Refuse an ``out`` that is (or holds) the current folder: renaming the result into place would leave the
    shell that ran tunesmith in a deleted folder (every later command there fails)."""
    target = Path(os.path.abspath(out))
    here = _cwd()
    if not target.name or (here is not None and Path(here).is_relative_to(target.parent.resolve() / target.name)):
        raise TunesmithError(f"--out {out}: is (or holds) the current folder, which the result would replace whole "
                             "(your shell would be left in a deleted folder); name a new folder, e.g. --out "
                             "./merged, or run from another folder")


def recover(out: Path) -> list[str]:
    """Undo what a killed run left beside ``out``; what it did, one line each. A live run's folders are left alone.

    A result that never passed its check is deleted; the previous result is put back when ``out`` is missing
    (killed between the two renames) or holds what an earlier version wrote there unchecked."""
    out = Path(os.path.abspath(out))
    prefix = f".{out.name}."
    done: list[str] = []
    if not out.name or not out.parent.is_dir():
        return done
    for stale in sorted(out.parent.iterdir()):
        kind, _, pid = stale.name[len(prefix):].rpartition("-")
        if not stale.name.startswith(prefix) or kind not in KINDS or not pid.isdigit() or _alive(int(pid)):
            continue
        if kind == "building" or (kind == "old" and out.exists()):
            _remove(stale)
            done.append(f"deleted {stale.name}, left by a killed run")
            continue
        if out.exists() or out.is_symlink():  # 'previous': out holds the unchecked result written beside it
            _remove(out)
        os.replace(stale, out)
        done.append(f"restored {out.name} from {stale.name}, left by a killed run")
    return done


def _alive(pid: int) -> bool:
    return pid == os.getpid() or pid_alive(pid)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None
