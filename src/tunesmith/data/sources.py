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


def open_rows(spec: DatasetSpec) -> tuple[Iterator[RawRow], str]:
    """The spec's raw rows and a digest of the bytes they come from."""
    path = Path(spec.path).expanduser()
    if path.is_dir():
        if hub.is_saved_dataset(path):
            return hub.load_saved(path, spec)
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
