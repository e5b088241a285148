"""Dataset mixing: how many rows of each training dataset a run uses.

Without ``weight``/``sample_ratio`` on any dataset and ``mix_temperature: 1`` every row is used
once (no mix). Otherwise the training rows keep their total N = sum of rows read, shared as
``p_i ~ (n_i x weight_i)^(1 / mix_temperature)``, rounded by largest remainder so they add up to
N exactly (weight default 1: ``T = 1`` keeps the natural
proportions, a large ``T`` tends to equal shares). A dataset with ``sample_ratio`` r uses
``round(r x n_i)`` rows instead, outside the shares. A target below n_i is a seeded sample
without replacement (in file order); above n_i every row is repeated ``target // n_i`` times
plus a seeded sample of the rest. The plan goes to ``run.json`` (``data_mix``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from tunesmith.config.schema import Config, DatasetSpec
from tunesmith.data.records import Record


@dataclass(frozen=True)
class MixEntry:
    path: str
    rows: int  # records read
    used: int  # records in the training set (repeats counted)
    share: float  # used / total used
    weight: float | None
    sample_ratio: float | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def is_mixed(config: Config) -> bool:
    return config.mix_temperature != 1.0 or any(s.weight is not None or s.sample_ratio is not None
                                                for s in config.datasets)


def targets(specs: Sequence[DatasetSpec], counts: Sequence[int], temperature: float) -> list[int]:
    """Rows to use per dataset (see the module docstring)."""
    free = [i for i, s in enumerate(specs) if s.sample_ratio is None and counts[i] > 0]
    total = sum(counts[i] for i in free)
    mass = {i: (counts[i] * (specs[i].weight or 1.0)) ** (1.0 / temperature) for i in free}
    norm = sum(mass.values())
    exact = {i: total * mass[i] / norm for i in free}
    shares = {i: int(exact[i]) for i in free}
    # largest remainders get the rows rounding down left over, so the shares add up to N exactly
    for i in sorted(free, key=lambda i: (shares[i] - exact[i], i))[:total - sum(shares.values())]:
        shares[i] += 1
    return [round(s.sample_ratio * counts[i]) if s.sample_ratio is not None else shares.get(i, 0)
            for i, s in enumerate(specs)]


def apply(config: Config, records: list[Record], spec_of: Sequence[int]) -> tuple[list[Record], list[MixEntry]]:
    """The training records after mixing (``spec_of[k]``: the dataset index of ``records[k]``), and
    what was done per dataset (empty when not mixed)."""
    if not is_mixed(config):
        return records, []
    parts: list[list[Record]] = [[] for _ in config.datasets]
    for record, i in zip(records, spec_of):
        parts[i].append(record)
    counts = [len(p) for p in parts]
    wanted = targets(config.datasets, counts, config.mix_temperature)
    rng = random.Random(config.seed)
    out: list[Record] = []
    used = []
    for part, n, target in zip(parts, counts, wanted):
        picked = part * (target // n) + [part[i] for i in sorted(rng.sample(range(n), target % n))] if n else []
        out.extend(picked)
        used.append(len(picked))
    entries = [MixEntry(s.path, n, u, round(u / max(1, len(out)), 4), s.weight, s.sample_ratio)
               for s, n, u in zip(config.datasets, counts, used)]
    return out, entries
