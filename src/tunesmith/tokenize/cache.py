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

CACHE_VERSION = 1


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


def save(path: Path, splits: dict[str, list[dict[str, list[int]]]], meta: dict[str, Any]) -> None:
    """Write splits (int columns as npz) and ``meta.json`` to a temp folder, then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, rows in splits.items():
        np.savez(tmp / f"{name}.npz", **_columns(rows))
    (tmp / "meta.json").write_text(json.dumps(meta), "utf-8")
    try:
        os.replace(tmp, path)
    except OSError:  # another run wrote the same entry first
        shutil.rmtree(tmp, ignore_errors=True)


def load(path: Path, names: Sequence[str]) -> tuple[dict[str, list[dict[str, list[int]]]], dict[str, Any]] | None:
    """The cached splits and meta, or None when there is no complete entry."""
    if not (path / "meta.json").is_file():
        return None
    meta = json.loads((path / "meta.json").read_text("utf-8"))
    splits = {}
    for name in names:
        with np.load(path / f"{name}.npz") as data:
            splits[name] = _rows({k: data[k] for k in data.files})
    return splits, meta


FLOAT_COLUMNS = frozenset({"loss_weights"})  # per-token loss weights (fractional loss_weight); the rest are ids


def _columns(rows: Sequence[dict[str, list[int]]]) -> dict[str, np.ndarray]:
    keys = sorted(rows[0]) if rows else []
    out: dict[str, np.ndarray] = {"__count": np.array([len(rows)], dtype=np.int64)}
    for key in keys:
        dtype = np.float64 if key in FLOAT_COLUMNS else np.int64
        out[key] = np.fromiter(itertools.chain.from_iterable(r[key] for r in rows), dtype=dtype)
        out[f"{key}__len"] = np.array([len(r[key]) for r in rows], dtype=np.int64)
    return out


def _rows(columns: dict[str, np.ndarray]) -> list[dict[str, list[int]]]:
    count = int(columns["__count"][0])
    keys = [k for k in columns if not k.startswith("__") and not k.endswith("__len")]
    rows: list[dict[str, list[int]]] = [{} for _ in range(count)]
    for key in keys:
        flat = columns[key].tolist()
        ends = np.cumsum(columns[f"{key}__len"]).tolist()
        start = 0
        for row, end in zip(rows, ends):
            row[key] = flat[start:end]
            start = end
    return rows
