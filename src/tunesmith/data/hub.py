"""Rows from the ``datasets`` library: ``save_to_disk`` folders and hub dataset ids.

``datasets`` is imported only here, inside the functions that need it. With
``HF_HUB_OFFLINE=1`` a hub id that is not in the local cache is a clear DataSourceError.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunesmith.config.schema import DatasetSpec
from tunesmith.data.readers import DataSourceError, RawRow, digest_files

_TRUTHY = {"1", "true", "yes", "on"}


def is_saved_dataset(folder: Path) -> bool:
    """True for a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    return (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file()


def offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in _TRUTHY for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def load_saved(folder: Path, spec: DatasetSpec) -> tuple[Iterator[RawRow], str]:
    """Rows of a save_to_disk folder and a digest of its files."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise DataSourceError(str(folder), f"is not a readable save_to_disk folder ({exc})") from None
    dataset = _split(loaded, spec, str(folder))
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return _rows(dataset, str(folder)), digest_files(files)


def load_hub(spec: DatasetSpec) -> tuple[Iterator[RawRow], str]:
    """Rows of a hub dataset (cached copy when offline) and a digest of its cache files."""
    import datasets

    try:
        dataset = datasets.load_dataset(spec.path, spec.name, split=spec.split, data_files=spec.data_files)
    except (ConnectionError, FileNotFoundError, ValueError) as exc:
        if offline():
            message = (
                f"is not a local file or folder, and hub dataset '{spec.path}' is not in the local cache "
                "(HF_HUB_OFFLINE=1 forbids downloading it: download it once online, or give a local path)"
            )
        else:
            message = f"is not a local file or folder, and loading it from the hub failed: {exc}"
        raise DataSourceError(spec.path, message) from None
    digest = hashlib.sha256()
    for entry in dataset.cache_files:
        path = Path(entry["filename"])
        digest.update(f"{path.name}:{path.stat().st_size}".encode())
    return _rows(dataset, spec.path), digest.hexdigest()


def _split(loaded: Any, spec: DatasetSpec, source: str) -> Any:
    """Pick ``spec.split`` from a DatasetDict; a plain Dataset is used as is."""
    import datasets

    if not isinstance(loaded, datasets.DatasetDict):
        return loaded
    if spec.split not in loaded:
        raise DataSourceError(source, f"has no split '{spec.split}' (it has: {', '.join(loaded)}; set split:)")
    return loaded[spec.split]


def _rows(dataset: Any, source: str) -> Iterator[RawRow]:
    for i, row in enumerate(dataset, 1):
        yield RawRow(source, i, None, row)
