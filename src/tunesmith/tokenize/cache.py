"""The tokenized-dataset cache: ``<output_dir>/.cache/tokenized/<key>/``, written atomically.

The key hashes the records, the tokenizer fingerprint (vocabulary, special tokens, chat
template) and every setting that changes tokenization, so any change builds a new entry.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tunesmith.data.records import Record

CACHE_VERSION = 2  # 2: one memory-mappable .npy per column (issue 20)


def records_fingerprint(splits: Sequence[Sequence[Record]]) -> str:
    """sha256 over the content of every record, split by split."""
    h = hashlib.sha256()
    for records in splits:
        h.update(b"\x00split\x00")
        for record in records:
            h.update(json.dumps(record.to_dict(), sort_keys=True, default=str).encode("utf-8"))
    return h.hexdigest()


def cache_key(data_fp: str, tokenizer_fp: str, settings: dict[str, Any]) -> str:
    payload = {"version": CACHE_VERSION, "data": data_fp, "tokenizer": tokenizer_fp, "settings": settings}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def cache_dir(output_dir: str | Path, key: str) -> Path:
    return Path(output_dir) / ".cache" / "tokenized" / key


def save(path: Path, splits: dict[str, Sequence[dict[str, list[int]]]], meta: dict[str, Any]) -> None:
    """Write each split's columns as flat ``.npy`` arrays (+ per-row lengths) and ``meta.json`` to a
    temp folder, then rename it (a reader never sees half an entry)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, rows in splits.items():
        for column, array in _columns(rows).items():
            np.save(tmp / f"{name}.{column}.npy", array)
    (tmp / "meta.json").write_text(json.dumps(meta), "utf-8")
    try:
        os.replace(tmp, path)
    except OSError:  # another run (or rank) wrote the same entry first
        shutil.rmtree(tmp, ignore_errors=True)


def load(path: Path, names: Sequence[str]) -> tuple[dict[str, "MappedRows"], dict[str, Any]] | None:
    """The cached splits (memory-mapped, see :class:`MappedRows`) and meta, or None when there is no
    complete entry (or one in an older layout)."""
    if not (path / "meta.json").is_file() or not all((path / f"{n}.__count.npy").is_file() for n in names):
        return None
    meta = json.loads((path / "meta.json").read_text("utf-8"))
    return {name: MappedRows(path, name) for name in names}, meta


class MappedRows(Sequence[dict[str, list[int]]]):
    """Tokenized rows read on demand from the cache's memory-mapped arrays: a row is materialised (as
    lists of ints) only when indexed, so a million rows cost their offsets in RAM, and the processes of
    a multi-process run share one copy of the tokens in the page cache."""

    def __init__(self, folder: Path, split: str):
        self.count = int(np.load(folder / f"{split}.__count.npy")[0])
        keys = sorted(p.name[len(split) + 1:-len(".npy")] for p in folder.glob(f"{split}.*.npy"))
        keys = [k for k in keys if not k.startswith("__") and not k.endswith("__len")]
        self._flat = {k: np.load(folder / f"{split}.{k}.npy", mmap_mode="r") if self.count else np.zeros(0, np.int32)
                      for k in keys}
        self._ends = {k: np.cumsum(np.load(folder / f"{split}.{k}__len.npy")) for k in keys}

    def __len__(self) -> int:
        return self.count

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MappedRows({self.count} rows: {', '.join(self._flat)})"

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        if index < 0:
            index += self.count
        if not 0 <= index < self.count:
            raise IndexError(f"row {index} of {self.count}")
        out = {}
        for key, flat in self._flat.items():
            end = int(self._ends[key][index])
            start = int(self._ends[key][index - 1]) if index else 0
            out[key] = flat[start:end].tolist()
        return out


FLOAT_COLUMNS = frozenset({"loss_weights"})  # per-token loss weights (fractional loss_weight); the rest are ids


def _columns(rows: Sequence[dict[str, list[int]]]) -> dict[str, np.ndarray]:
    keys = sorted(rows[0]) if len(rows) else []
    out: dict[str, np.ndarray] = {"__count": np.array([len(rows)], dtype=np.int64)}
    for key in keys:
        dtype = np.float32 if key in FLOAT_COLUMNS else np.int32  # ids fit int32; weights are fractions
        out[key] = np.fromiter(itertools.chain.from_iterable(r[key] for r in rows), dtype=dtype)
        out[f"{key}__len"] = np.array([len(r[key]) for r in rows], dtype=np.int64)
    return out
