"""Is a golden task's drop beyond row noise? A paired sign test over the rows both models scored.

On a small golden set one row is several points (24 rows: 4.2), and greedy decoding flips a row or
two after any further training. ``evaluate`` writes each row's part in the headline metric
(``generations_<name>.jsonl``: ``headline``; older files have none, and the ratio decides); the gate
pairs the candidate's rows with the baseline's by source (``file:line``) and counts the rows that got worse
and better. Under "no change" each differing row is equally likely to go either way, so the
chance of at least ``worse`` of ``worse + better`` going down is a binomial tail (exact).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from math import comb
from typing import Any

Rows = dict[str, dict[str, float]]  # task -> source -> headline value


@dataclass(frozen=True)
class Paired:
    """Rows both scored (``shared``), of which ``worse`` went down and ``better`` up; ``p`` is the
    one-sided sign test's p-value for "the candidate is worse"."""

    shared: int
    worse: int
    better: int
    p: float

    def describe(self) -> str:
        return (f"{self.worse} row(s) worse, {self.better} better of {self.shared} paired "
                f"(sign test p = {self.p:.3g})")


def by_task(generations: Iterable[dict[str, Any]]) -> Rows:
    """Each task's row values by source, from the scored rows (``evaluate.output.read_generations``);
    empty for rows without a ``headline`` (the gate then judges by the ratio alone)."""
    rows: Rows = {}
    for row in generations:
        value = row.get("headline")  # older files: none (their ``score`` is not always the headline's part)
        if isinstance(value, (int, float)) and row.get("source"):
            rows.setdefault(str(row.get("task")), {})[str(row["source"])] = float(value)
    return rows


def asked(generations: Iterable[dict[str, Any]]) -> dict[str, dict[str, tuple[str, str]]]:
    """Each task's (prompt, gold) by source: what a row asked, so two evaluations that name the same
    row but hold another version of it (an edited gold or prompt) are not paired as one."""
    rows: dict[str, dict[str, tuple[str, str]]] = {}
    for row in generations:
        if row.get("source"):
            rows.setdefault(str(row.get("task")), {})[str(row["source"])] = (str(row.get("prompt")), str(row.get("gold")))
    return rows


def sign_test(before: dict[str, float], after: dict[str, float]) -> Paired | None:
    """The paired comparison of one task's rows; None when no row is in both."""
    shared = before.keys() & after.keys()
    if not shared:
        return None
    worse = sum(1 for s in shared if after[s] < before[s] - 1e-9)
    better = sum(1 for s in shared if after[s] > before[s] + 1e-9)
    n = worse + better
    p = sum(comb(n, k) for k in range(worse, n + 1)) / 2**n if n else 1.0
    return Paired(len(shared), worse, better, p)
