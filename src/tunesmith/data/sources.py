"""Resolve a DatasetSpec's ``path`` to rows: local file, folder, save_to_disk folder or hub id."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from tunesmith.config import refs
from tunesmith.config.schema import DatasetSpec
from tunesmith.data import hub
from tunesmith.data.readers import READERS, DataSourceError, RawRow, digest_files, folder_files, read_file

def looks_like_hub_id(path: str) -> bool:
    """A dataset hub id: ``config.refs.looks_like_hub_id`` with the readers' file suffixes excluded."""
    return refs.looks_like_hub_id(path, READERS)


# files a folder dataset may hold beside its data without a word: documentation and loading scripts
_DOCS = frozenset({"readme", "license", "licence", "copying", "notice", "changelog", "citation"})
_DOC_SUFFIXES = frozenset({".md", ".rst", ".py", ".yaml", ".yml", ".cff"})


def _refuse_unread(folder: Path) -> None:
    """A folder dataset reads every supported file under it; a saved dataset inside it, or a file it
    cannot read (``.gz``, ``.tsv``, ...), would be left out without a word: refused, naming them."""
    saved = sorted(p for p in folder.rglob("*") if p.is_dir() and p != folder and hub.is_saved_dataset(p)
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if saved:
        raise DataSourceError(str(saved[0]), "is a saved dataset (save_to_disk) inside a folder dataset; its rows "
                              "would not be read: give it as a dataset path of its own, and the other files with "
                              "data_files")
    unread = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                    if p.is_file() and p.suffix.lower() not in READERS
                    and not any(part.startswith(".") for part in p.relative_to(folder).parts)
                    and p.stem.split(".")[0].lower() not in _DOCS and p.suffix.lower() not in _DOC_SUFFIXES)
    if unread:
        shown = ", ".join(unread[:5]) + (f" and {len(unread) - 5} more" if len(unread) > 5 else "")
        raise DataSourceError(str(folder), f"holds files tunesmith cannot read: {shown} (supported: "
                              f"{', '.join(sorted(READERS))}); convert them, or choose the files to read with "
                              "data_files: [globs]")


def open_rows(spec: DatasetSpec) -> tuple[Iterator[RawRow], str]:
    """The spec's raw rows and a digest of the bytes they come from."""
    path = Path(spec.path).expanduser()
    if path.is_dir():
        if hub.is_saved_dataset(path):
            return hub.load_saved(path, spec)
        if not spec.data_files:
            _refuse_unread(path)
        files = folder_files(path, spec.data_files)
        if not files:
            raise DataSourceError(spec.path, f"folder has no data files ({', '.join(sorted(READERS))})")
    elif path.is_file():
        files = [path]
    elif looks_like_hub_id(spec.path):
        return hub.load_hub(spec)
    else:
        raise DataSourceError(spec.path, "no such file or folder")
    for file in files:
        if file.suffix.lower() not in READERS:
            supported = ", ".join(sorted(READERS))
            raise DataSourceError(str(file), f"unsupported file type '{file.suffix}' (supported: {supported})")
    rows = itertools.chain.from_iterable(read_file(f, spec) for f in files)
    return rows, digest_files(files)
