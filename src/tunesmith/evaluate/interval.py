"""How far a task's headline figure could move on another draw of rows of the same kind: a 95 % interval.

On 30 or 50 rows one row is 2-3 points, so a figure alone does not say whether a difference, or a
missed target, means anything. Each task's headline metric gets an interval:

- a share of right rows (every row 0 or 1: accuracy, JSON validity, exact match, ...): the Wilson
  score interval, which stays honest at 0 % and 100 % (a bootstrap would give 30/30 the interval
  [1, 1]);
- a mean of row values in [0, 1] (token F1, a judge's normalised score): the percentile bootstrap of
  the mean;
- a figure that is not a row mean (the label scorer's macro-F1): the percentile bootstrap of the
  scorer's own ``headline_of`` over resampled rows.

The bootstrap resamples with a fixed seed, so a rerun prints the same interval. Corpus-level
overlap scores (BLEU, chrF: weak signals already) get none. The interval describes the rows
evaluated, not the model on other kinds of requests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

Z95 = 1.959963984540054
RESAMPLES = 1000
WIDE = 0.10  # a half-width above this is reported: differences smaller than it are within row noise


def wilson(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of the proportion ``hits / n`` ((0, 1) when n is 0)."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Interval:
    """The 95 % interval of a task's headline ``metric`` over its ``n`` rows, and how it was formed."""

    metric: str
    low: float
    high: float
    n: int
    method: str

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def describe(self) -> str:
        return f"{self.low:.1%}-{self.high:.1%}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "confidence": 0.95}


def headline(scorer: Any, score: Any) -> Interval | None:
    """The interval of ``score``'s headline metric (a ``TaskScore`` from ``scorer``); None when the
    scorer's figure is corpus-level (BLEU, chrF: ``headline_of`` gives none), or there are fewer than
    two scored rows. A weak signal that is a row mean (ROUGE-L) gets one, as README promises."""
    if score.main not in score.metrics:
        return None
    rows = [r for r in score.rows if r.headline_value is not None]
    point = scorer.headline_of(rows)
    if len(rows) < 2 or point is None or abs(point - score.metrics[score.main]) > 1e-6:
        return None  # the rows do not reproduce the headline: no interval rather than a wrong one
    values = [float(r.headline_value) for r in rows]
    method = f"bootstrap (percentile, {RESAMPLES} resamples)"
    if scorer.headline_is_row_mean and all(v in (0.0, 1.0) for v in values):
        (low, high), method = wilson(int(sum(values)), len(values)), "wilson"
    elif scorer.headline_is_row_mean:
        low, high = _bootstrap(values, point)
    else:
        low, high = _bootstrap(rows, point, scorer.headline_of_resamples)
    # rounding (Wilson at 0 or 100 %) or a skewed bootstrap may leave the point a hair outside: never
    return Interval(score.main, min(low, point), max(high, point), len(rows), method)


def _bootstrap(items: Sequence[Any], point: float, many: Any = None) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of ``items`` (``many`` None) or of the figure
    ``many(items, index array)`` gives for each resample (a scorer's ``headline_of_resamples``, all
    resamples in one call); ``point`` should the interval come back undefined (NaN)."""

    import numpy as np
    from scipy.stats import bootstrap

    rng = np.random.default_rng(0)
    if many is None:
        data, statistic = (np.asarray(items, dtype=float),), np.mean
    else:
        data = (np.arange(len(items)),)

        def statistic(index: Any, axis: int = -1) -> Any:
            return many(items, np.moveaxis(index, axis, -1))
    result = bootstrap(data, statistic, n_resamples=RESAMPLES, method="percentile", rng=rng, vectorized=True)
    low, high = result.confidence_interval
    return _finite(low, point), _finite(high, point)


def _finite(value: float, point: float) -> float:
    return point if math.isnan(value) else float(min(1.0, max(0.0, value)))


def wide_notes(tasks: dict[str, Any]) -> list[str]:
    """One line per task whose headline interval is wider than +-``WIDE``: its rows are too few to
    tell apart models, runs or a target closer than that (``tasks``: name -> ``TaskResult``)."""
    lines = []
    for name, task in tasks.items():
        iv = task.score.interval
        if iv is not None and iv.half_width > WIDE:
            lines.append(f"note: {name} has {iv.n} rows: the 95 % interval of its {iv.metric} is {iv.describe()} "
                         f"(+-{100 * iv.half_width:.0f} points); a difference smaller than that, between models, "
                         "runs or against a target, is within row noise")
    return lines
