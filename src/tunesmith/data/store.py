"""Rows kept on disk instead of as Python objects: what lets a dataset larger than memory go
through ingestion, the audit and tokenization (issue 20).

:class:`RowStore` is an append-only sequence of pickled objects (records, texts) in an unnamed
temporary file (removed when the store is garbage-collected or the process ends), read back on
demand with ``os.pread`` (the page cache holds the bytes, not this process: reading a million rows
costs their offsets in RAM, not the rows). :class:`Picked` (a subset, by index) and
:class:`Chained` (splits one after another) are views over such sequences that keep it that way.

Ingestion keeps records in a plain list up to ``SPILL_ROWS`` rows, then moves them to a store
(:func:`spill`): small datasets behave exactly as before, large ones stay flat in memory. Both
give the same records in the same order.
"""

from __future__ import annotations

import os
import pickle
from bisect import bisect_right
import tempfile
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
SPILL_ROWS = 100_000  # rows held as Python objects before ingestion moves them to disk
_READ_AHEAD = 4 << 20  # bytes read per os.pread when iterating
_BLOCK = 64 << 10  # bytes read per os.pread when indexing (the next rows are read with the one asked for)


class _Rows(Sequence[T]):
    """Equality with any sequence (element by element) and slicing to a list, for the views below."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def _index(self, index: int) -> int:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"row {index} of {n}")
        return index


class RowStore(_Rows[T]):
    """Objects appended one by one, stored pickled in a temporary file, read back on demand."""

    def __init__(self, items: Iterable[T] = (), directory: str | None = None):
        self._file = tempfile.TemporaryFile(dir=directory)
        self._ends = array("q")
        self._dirty = False
        self._block: tuple[int, int, int, bytes] = (0, 0, 0, b"")  # rows [first, stop) read last, from byte `at`
        self.extend(items)

    def append(self, item: T) -> None:
        self._block = (0, 0, 0, b"")
        data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        self._file.write(data)
        self._ends.append((self._ends[-1] if self._ends else 0) + len(data))
        self._dirty = True

    def extend(self, items: Iterable[T]) -> None:
        for item in items:
            self.append(item)

    def _fd(self) -> int:
        if self._dirty:
            self._file.flush()
            self._dirty = False
        return self._file.fileno()

    def __len__(self) -> int:
        return len(self._ends)

    def _span(self, i: int) -> tuple[int, int]:
        return (self._ends[i - 1] if i else 0), self._ends[i]

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = self._index(int(index))
        first, stop, at, block = self._block
        if not first <= i < stop:  # read this row and the next ones up to _BLOCK bytes: rows read in order hit
            first, at = i, self._span(i)[0]
            stop = max(i + 1, bisect_right(self._ends, at + _BLOCK, i))
            block = os.pread(self._fd(), self._ends[stop - 1] - at, at)
            self._block = (first, stop, at, block)
        start, end = self._span(i)
        return pickle.loads(memoryview(block)[start - at : end - at])

    def __iter__(self) -> Iterator[T]:
        fd, n, i = self._fd(), len(self), 0
        while i < n:
            first = self._span(i)[0]
            j = i + 1  # rows i..j-1 in one read of about _READ_AHEAD bytes
            while j < n and self._ends[j] - first <= _READ_AHEAD:
                j += 1
            block = memoryview(os.pread(fd, self._ends[j - 1] - first, first))
            for k in range(i, j):
                start, end = self._span(k)
                yield pickle.loads(block[start - first : end - first])
            i = j

    def __repr__(self) -> str:
        return f"RowStore({len(self)} rows on disk)"


class Picked(_Rows[T]):
    """``[base[i] for i in indices]`` without holding the rows."""

    def __init__(self, base: Sequence[T], indices: Sequence[int]):
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.base[int(self.indices[self._index(int(index))])]

    def __iter__(self) -> Iterator[T]:
        for i in self.indices:
            yield self.base[int(i)]

    def __repr__(self) -> str:
        return f"Picked({len(self)} of {len(self.base)} rows)"


class Chained(_Rows[T]):
    """Sequences one after another (the audit's train + eval + test) without copying them."""

    def __init__(self, parts: Sequence[Sequence[T]]):
        self.parts = list(parts)
        self._starts = np.cumsum([0] + [len(p) for p in self.parts])
        self._first = len(self.parts[0]) if self.parts else 0

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = self._index(int(index))
        if i < self._first:
            return self.parts[0][i]
        k = int(np.searchsorted(self._starts, i, side="right")) - 1
        return self.parts[k][i - int(self._starts[k])]

    def __iter__(self) -> Iterator[T]:
        for part in self.parts:
            yield from part

    def __repr__(self) -> str:
        return f"Chained({' + '.join(str(len(p)) for p in self.parts)} rows)"


def on_disk(rows: Sequence[Any]) -> bool:
    """Whether ``rows`` are (a view of) rows kept on disk rather than a list of objects."""
    return isinstance(rows, _Rows)


def spill(rows: list[T] | RowStore[T], limit: int) -> list[T] | RowStore[T]:
    """``rows`` moved to a :class:`RowStore` once a list holds more than ``limit`` of them."""
    if isinstance(rows, list) and len(rows) > limit:
        return RowStore(rows)
    return rows


def take(rows: Sequence[T], indices: Sequence[int]) -> list[T] | Picked[T]:
    """``[rows[i] for i in indices]``: a list for a list, a :class:`Picked` view for rows on disk."""
    if on_disk(rows):
        return Picked(rows, indices)
    return [rows[i] for i in indices]


def chain(parts: Sequence[Sequence[T]]) -> list[T] | Chained[T]:
    """``[*parts[0], *parts[1], ...]``: a list when every part is a list, else a :class:`Chained` view."""
    if any(on_disk(p) for p in parts):
        return Chained(parts)
    return [item for part in parts for item in part]
