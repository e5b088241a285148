"""Sample packing (best-fit decreasing) and the padding/packing efficiency figures."""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence

from tunesmith.tokenize.chat import IGNORE


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bins of sample indices, each holding at most ``capacity`` tokens.

    Longest samples first; each goes into the open bin with the least room that still fits it.
    """
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin index), sorted
    for index in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        size = lengths[index]
        if size > capacity:
            raise ValueError(f"sample {index} has {size} tokens, more than the bin capacity {capacity}")
        k = bisect_left(free, (size, -1))
        if k == len(free):
            bins.append([index])
            insort(free, (capacity - size, len(bins) - 1))
            continue
        room, b = free.pop(k)
        bins[b].append(index)
        insort(free, (room - size, b))
    return bins


def pack(rows: Sequence[dict[str, list[int]]], bins: Sequence[Sequence[int]]) -> list[dict[str, list[int]]]:
    """One packed row per bin of row indices: concatenated ``input_ids``/``labels`` with
    ``position_ids`` restarting at 0 for every sample. Each sample's first label is -100:
    nothing before it in its own sample predicts it, so no loss crosses a sample boundary."""
    weighted = bool(rows) and "loss_weights" in rows[0]  # fractional loss_weight: carried the same way
    packed = []
    for members in bins:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        weights: list[float] = []
        for k in members:
            row = rows[k]
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
        packed.append(out)
    return packed


def packing_efficiency(lengths: Sequence[int], bins: Sequence[Sequence[int]], capacity: int) -> float | None:
    """Real tokens / slots of ``bins`` (each ``capacity`` slots)."""
    return sum(lengths) / (len(bins) * capacity) if bins else None


def padded_efficiency(lengths: Sequence[int], batch_size: int) -> float | None:
    """Real tokens / slots without packing: batches of ``batch_size`` padded to their longest row."""
    if not lengths:
        return None
    batches = [lengths[k : k + batch_size] for k in range(0, len(lengths), batch_size)]
    return sum(lengths) / sum(max(batch) * len(batch) for batch in batches)
