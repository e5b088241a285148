"""Sample packing (best-fit decreasing) and the padding/packing efficiency figures.

Packing streams (issue 20): the bins are two flat arrays (:class:`Bins`, computed from a numpy array
of lengths), and :func:`packed_rows` yields one packed row at a time, reading its members from the
rows it is given (the cache's memory-mapped :class:`~tunesmith.tokenize.cache.MappedRows`), so a
caller writes them to the cache as they come instead of holding every packed row.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from tunesmith.tokenize.chat import IGNORE


class Bins(Sequence[list[int]]):
    """Bins of sample indices without a Python list per bin: bin ``b`` holds
    ``members[starts[b]:starts[b + 1]]`` (in the order the samples went in)."""

    def __init__(self, members: np.ndarray, starts: np.ndarray):
        self.members, self.starts = members, starts

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        b = range(len(self))[index]
        return self.members[self.starts[b] : self.starts[b + 1]].tolist()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(list(a) == list(b) for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]


def bins_for(lengths: Sequence[int] | np.ndarray, capacity: int) -> Bins:
    """Best-fit decreasing: longest samples first (ties by index); each goes into the open bin with
    the least room that still fits it, and a new bin opens when none does."""
    sizes = np.asarray(lengths, dtype=np.int64).reshape(-1)
    order = np.lexsort((np.arange(len(sizes)), -sizes))
    if len(sizes) and sizes[order[0]] > capacity:
        raise ValueError(f"sample {int(order[0])} has {int(sizes[order[0]])} tokens, more than the bin capacity {capacity}")
    bin_of = np.empty(len(sizes), dtype=np.int64)  # the bin of each sample, in `order`
    free: list[tuple[int, int]] = []  # (room left, bin index), sorted
    opened = 0
    for pos, size in enumerate(sizes[order].tolist()):
        k = bisect_left(free, (size, -1))
        if k == len(free):
            bin_of[pos] = opened
            insort(free, (capacity - size, opened))
            opened += 1
            continue
        room, b = free.pop(k)
        bin_of[pos] = b
        insort(free, (room - size, b))
    grouped = np.argsort(bin_of, kind="stable")  # by bin, each bin's members in the order they went in
    starts = np.zeros(opened + 1, dtype=np.int64)
    np.cumsum(np.bincount(bin_of, minlength=opened), out=starts[1:])
    return Bins(order[grouped], starts)


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bins of sample indices, each holding at most ``capacity`` tokens (:func:`bins_for` as lists)."""
    return list(bins_for(lengths, capacity))


def packed_rows(rows: Sequence[dict[str, list[int]]], bins: Sequence[Sequence[int]]) -> Iterator[dict[str, list[int]]]:
    """One packed row per bin of row indices, made when asked for: concatenated
    ``input_ids``/``labels`` with ``position_ids`` restarting at 0 for every sample. Each sample's
    first label is -100: nothing before it in its own sample predicts it, so no loss crosses a
    sample boundary."""
    weighted = len(rows) > 0 and "loss_weights" in rows[0]  # fractional loss_weight: carried the same way
    for members in bins:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        weights: list[float] = []
        for k in members:
            row = rows[int(k)]
            ids.extend(row["input_ids"])
            labels.append(IGNORE)
            labels.extend(row["labels"][1:])
            positions.extend(range(len(row["input_ids"])))
            if weighted:
                weights.append(0.0)
                weights.extend(row["loss_weights"][1:])
        out = {"input_ids": ids, "labels": labels, "position_ids": positions}
        if weighted:
            out["loss_weights"] = weights
        yield out


def pack(rows: Sequence[dict[str, list[int]]], bins: Sequence[Sequence[int]]) -> list[dict[str, list[int]]]:
    """Every packed row of :func:`packed_rows`, in a list (small inputs; tokenization streams them)."""
    return list(packed_rows(rows, bins))


def packing_efficiency(lengths: Sequence[int], bins: Sequence[Sequence[int]], capacity: int) -> float | None:
    """Real tokens / slots of ``bins`` (each ``capacity`` slots)."""
    return int(np.sum(lengths, dtype=np.int64)) / (len(bins) * capacity) if len(bins) else None


def padded_efficiency(lengths: Sequence[int], batch_size: int) -> float | None:
    """Real tokens / slots without packing: batches of ``batch_size`` padded to their longest row."""
    sizes = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if not len(sizes):
        return None
    starts = np.arange(0, len(sizes), batch_size)
    longest = np.maximum.reduceat(sizes, starts)
    counts = np.diff(np.append(starts, len(sizes)))
    return int(sizes.sum()) / int((longest * counts).sum())
