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
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tunesmith.data.records import Record
from tunesmith.tokenize.chat import IGNORE

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
    """Write each split's rows (lists of rows) as an entry at once (see :class:`Entry`)."""
    entry = Entry(path)
    for name, rows in splits.items():
        writer = entry.writer(name)
        for row in rows:
            writer.append(row)
    entry.commit(meta)


class Entry:
    """A cache entry being written: each split's columns streamed to a temp folder as rows come
    (:meth:`writer`), then ``meta.json`` and a rename (:meth:`commit`: a reader never sees half an
    entry) or the folder removed (:meth:`discard`)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.tmp = path.parent / f".tmp-{path.name}-{os.getpid()}"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        self.writers: list[ColumnWriter] = []

    def writer(self, split: str, flush: int | None = None) -> ColumnWriter:
        """``flush``: rows buffered per column (default ``_FLUSH``; fewer for long packed rows)."""
        self.writers.append(ColumnWriter(self.tmp, split, flush or _FLUSH))
        return self.writers[-1]

    def commit(self, meta: dict[str, Any]) -> None:
        for writer in self.writers:
            writer.finish()
        (self.tmp / "meta.json").write_text(json.dumps(meta), "utf-8")
        try:
            os.replace(self.tmp, self.path)
        except OSError:  # another run (or rank) wrote the same entry first
            shutil.rmtree(self.tmp, ignore_errors=True)

    def discard(self) -> None:
        for writer in self.writers:
            writer.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


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
        trained = folder / f"{split}.__trained.npy"
        self.trained = int(np.load(trained)[0]) if trained.is_file() else None  # labels != -100, in all rows

    def lengths(self, key: str) -> np.ndarray:
        """Per-row lengths of one column, without reading the rows."""
        return np.diff(self._ends[key], prepend=0)

    @property
    def columns(self) -> list[str]:
        return list(self._flat)

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


class ReadRows(Sequence[dict[str, list[int]]]):
    """The rows of a :class:`MappedRows` read with ``os.pread`` instead of through its memory maps:
    a pass over every row (packing) then leaves no mapped pages counted in this process's RSS.
    The same rows; :meth:`close` (or ``with``) closes the files."""

    def __init__(self, rows: MappedRows):
        self.rows = rows
        self._files = {key: (os.open(flat.filename, os.O_RDONLY), flat.offset, flat.dtype)
                       for key, flat in rows._flat.items() if isinstance(flat, np.memmap)}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self))[index]
        out = {}
        for key, (fd, offset, dtype) in self._files.items():
            ends = self.rows._ends[key]
            start, end = (int(ends[index - 1]) if index else 0), int(ends[index])
            data = os.pread(fd, (end - start) * dtype.itemsize, offset + start * dtype.itemsize)
            out[key] = np.frombuffer(data, dtype=dtype).tolist()
        return out

    def close(self) -> None:
        for fd, _, _ in self._files.values():
            os.close(fd)
        self._files.clear()

    def __enter__(self) -> "ReadRows":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


FLOAT_COLUMNS = frozenset({"loss_weights"})  # per-token loss weights (fractional loss_weight); the rest are ids
_FLUSH = 4096  # rows buffered per column before they are written


class ColumnWriter:
    """Rows of one split appended as they are tokenized: each column's values go to a raw file in
    blocks of ``flush`` rows (nothing but the per-row lengths stays in memory), and
    :meth:`finish` turns them into the ``.npy`` files :class:`MappedRows` maps. A split where some
    row carries ``loss_weights`` gets them on every row (1 where trained, 0 elsewhere by default),
    also on the rows written before the first weighted one."""

    def __init__(self, folder: Path, split: str, flush: int = _FLUSH):
        self.folder, self.split, self.flush = folder, split, flush
        self.count = 0
        self._lens: dict[str, array] = {}
        self._buffer: dict[str, list[list[Any]]] = {}
        self._files: dict[str, Any] = {}
        self.trained = 0  # labels that are not -100, over the split

    def __len__(self) -> int:
        return self.count

    def append(self, row: dict[str, list[Any]]) -> None:
        if "loss_weights" in row and self.count and "loss_weights" not in self._lens:
            self._backfill_weights()
        if "loss_weights" in self._lens and "loss_weights" not in row:
            row = {**row, "loss_weights": [0.0 if x == IGNORE else 1.0 for x in row["labels"]]}
        if not self._lens:
            self._lens = {key: array("q") for key in row}
            self._buffer = {key: [] for key in row}
        for key, values in row.items():
            self._lens[key].append(len(values))
            self._buffer[key].append(values)
        self.count += 1
        if self.count % self.flush == 0:
            self._flush()

    def _raw(self, key: str) -> Path:
        return self.folder / f"{self.split}.{key}.raw"

    def _flush(self) -> None:
        for key, rows in self._buffer.items():
            if key not in self._files:
                self._files[key] = self._raw(key).open("ab")
            values = np.fromiter(itertools.chain.from_iterable(rows), dtype=_dtype(key))
            if key == "labels":
                self.trained += int(np.count_nonzero(values != IGNORE))
            values.tofile(self._files[key])
            rows.clear()

    def _backfill_weights(self) -> None:
        """The default weights of the rows written so far, from their labels (read back in blocks)."""
        self._flush()
        self._files["labels"].flush()
        out = self._files["loss_weights"] = self._raw("loss_weights").open("ab")
        with self._raw("labels").open("rb") as labels:
            while (block := np.fromfile(labels, dtype=np.int32, count=1 << 22)).size:
                (block != IGNORE).astype(np.float32).tofile(out)
        self._lens["loss_weights"] = array("q", self._lens["labels"])
        self._buffer["loss_weights"] = []

    def finish(self) -> None:
        """The split's ``.npy`` files: ``__count``, per column the values and ``<column>__len``."""
        self._flush()
        self.close()
        np.save(self.folder / f"{self.split}.__count.npy", np.array([self.count], dtype=np.int64))
        np.save(self.folder / f"{self.split}.__trained.npy", np.array([self.trained], dtype=np.int64))
        for key, lens in self._lens.items():
            lengths = np.frombuffer(lens, dtype=np.int64) if len(lens) else np.zeros(0, np.int64)
            np.save(self.folder / f"{self.split}.{key}__len.npy", lengths)
            _npy_from_raw(self._raw(key), self.folder / f"{self.split}.{key}.npy", _dtype(key), int(lengths.sum()))

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()


def _dtype(key: str) -> type:
    return np.float32 if key in FLOAT_COLUMNS else np.int32  # ids fit int32; weights are fractions


def _npy_from_raw(raw: Path, npy: Path, dtype: type, size: int) -> None:
    """An ``.npy`` file holding ``raw``'s values: the header, then the bytes copied over (a file
    write, not a memory map, so the copy does not count in this process's memory)."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (size,)}
    with npy.open("wb") as out:
        np.lib.format.write_array_header_1_0(out, header)
        if raw.exists():
            with raw.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 22)
    raw.unlink(missing_ok=True)
