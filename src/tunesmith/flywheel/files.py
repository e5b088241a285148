"""The flywheel's files: atomic JSON/JSONL writes, sha256 fingerprints, output folders, the refusal to overwrite."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError


def sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_text(path: Path, text: str) -> None:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def write_json(path: Path, value: Any) -> None:
    write_text(path, json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))


def refuse_overwrite(paths: Iterable[Path], overwrite: bool, what: str) -> None:
    """Raise when any of ``paths`` exists and ``overwrite`` is off."""
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise TunesmithError(f"{existing[0]}: {what} already exists; pass --overwrite to replace it")


def require_folder(path: Path) -> None:
    """An output folder: absent (it will be made) or a folder; a file there is a user mistake, named."""
    if path.exists() and not path.is_dir():
        raise TunesmithError(f"{path}: the output folder is a file; name a folder")
