"""What a run directory may be: never a folder holding the run's inputs, never inside one.

``--overwrite`` deletes the run directory's contents, and a folder dataset reads every data
file under it, so an ``output_dir`` that contains (or is contained in) a dataset folder, the
base model or another input would destroy the inputs or train on the run's own files.
Deleting never follows a symbolic link: a link inside a run directory is removed, not its target.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tunesmith.config import Config
from tunesmith.errors import TunesmithError


class RunDirError(TunesmithError):
    """The output directory is not usable for this run (or would destroy something)."""


def inputs_of(config: Config) -> list[tuple[str, Path]]:
    """(config key, resolved local path) of every local file or folder the run reads."""
    found: list[tuple[str, str]] = []
    for key in ("datasets", "eval_datasets", "test_datasets", "eval_tasks"):
        found += [(f"{key}[{i}].path", spec.path) for i, spec in enumerate(getattr(config, key))]
    found.append(("base_model", config.base_model))
    if config.chat_template.endswith(".jinja"):
        found.append(("chat_template", config.chat_template))
    out = []
    for key, raw in found:
        path = Path(raw).expanduser()
        if path.exists():
            out.append((key, path.resolve()))
    return out


def check_inputs(config: Config) -> None:
    """Refuse an ``output_dir`` that holds an input, is one, or lies inside an input folder."""
    out = Path(config.output_dir).expanduser().resolve()
    for key, path in inputs_of(config):
        if path == out or out in path.parents:
            raise RunDirError(
                f"output_dir {config.output_dir} holds the run's own input ({key}: {path}); a run directory "
                "must not contain its inputs (--overwrite would delete them): choose another output_dir"
            )
        if path.is_dir() and path in out.parents:
            raise RunDirError(
                f"output_dir {config.output_dir} is inside the input folder {path} ({key}): the run's own files "
                "would become part of that input (a folder dataset would read them as training rows): choose "
                "an output_dir outside it"
            )


def remove_entry(path: Path) -> None:
    """Delete a file, a symlink (the link only) or a folder tree (links inside are unlinked, never followed)."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
        return
    shutil.rmtree(path)  # rmtree unlinks symlinks it meets inside; it never descends into their targets


def clear(folder: Path, keep: tuple[str, ...] = (".cache",)) -> None:
    """Delete everything in ``folder`` except ``keep`` (used on tunesmith run directories only)."""
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name not in keep:
            remove_entry(Path(entry.path))
