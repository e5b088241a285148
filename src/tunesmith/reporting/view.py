"""The pieces every tunesmith HTML report shares: what a metric row, a confusion matrix and a
side-by-side example are, how values are formatted, the stylesheet and the Jinja macros
(``templates/``), and one Jinja environment that finds them.

Two-column views compare a reference (``base``: the base model, a baseline) with a model under
test (``tuned``: the fine-tune, a candidate); each page names its two columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, Template

DASH = "\u2014"


@dataclass
class MetricRow:
    """One metric of one task, reference vs model under test; values are fractions 0..1 shown as percentages."""

    task: str
    metric: str
    base: float | None
    tuned: float | None
    main: bool = False
    higher_is_better: bool = True
    base_interval: tuple[float, float] | None = None  # 95 % interval of a headline (``evaluate.interval``)
    tuned_interval: tuple[float, float] | None = None


@dataclass
class ConfusionView:
    """Counts per gold label (rows) and predicted column (columns may add e.g. 'invalid')."""

    task: str
    labels: list[str]
    columns: list[str]
    base: list[list[int]]
    tuned: list[list[int]]

    def __post_init__(self) -> None:
        for name, matrix in (("base", self.base), ("tuned", self.tuned)):
            if len(matrix) != len(self.labels) or any(len(row) != len(self.columns) for row in matrix):
                raise ValueError(f"confusion {self.task!r} {name}: expected {len(self.labels)} rows of "
                                 f"{len(self.columns)} counts")


@dataclass
class Example:
    """One prompt with the gold answer and both models' generations."""

    task: str
    prompt: str
    gold: str
    base: str
    tuned: str
    base_ok: bool
    tuned_ok: bool


def pct(value: float | None) -> str:
    """0.973 -> '97.3%'; None or non-finite -> an em dash."""
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value * 100:.1f}%"


def delta(row: MetricRow) -> tuple[str, str]:
    """(text in percentage points, css class 'better'/'worse'/'same'/'na') of tuned - base."""
    if row.base is None or row.tuned is None or not (math.isfinite(row.base) and math.isfinite(row.tuned)):
        return DASH, "na"
    points = round((row.tuned - row.base) * 100, 1)
    if points == 0:
        return "0.0 pp", "same"
    improved = (points > 0) == row.higher_is_better
    return f"{points:+.1f} pp", "better" if improved else "worse"


def seconds(value: float) -> str:
    """Seconds as '0.42 s', '12.3 s' or '3 min 05 s'."""
    if value < 1:
        return f"{value:.2f} s"
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest:02d} s"


def sci(value: Any) -> str:
    """A number in scientific notation ('3.20e-07'), or an em dash when missing."""
    return DASH if value is None else f"{float(value):.2e}"


def matrix(view: ConfusionView, counts: list[list[int]]) -> list[list[dict[str, Any]]]:
    """Cells with their count and a shade proportional to the share of the gold row."""
    rows = []
    for label, row in zip(view.labels, counts):
        total = sum(row) or 1
        cells = []
        for column, count in zip(view.columns, row):
            hit = label == column
            alpha = 0.08 + 0.6 * count / total if count else 0.0
            rgb = "0,114,178" if hit else "213,94,0"
            cells.append({"count": count, "hit": hit, "style": f"background: rgba({rgb},{alpha:.2f})"})
        rows.append(cells)
    return rows


def metric_entries(rows: list[MetricRow]) -> list[dict[str, Any]]:
    """Template entries of metric rows: the row, both values formatted, and the delta."""
    return [{"row": m, "base": pct(m.base), "tuned": pct(m.tuned), "delta": delta(m),
             "base_ci": span(m.base_interval), "tuned_ci": span(m.tuned_interval)} for m in rows]


def span(interval: tuple[float, float] | None) -> str:
    """A 95 % interval as ``[61-86]`` percent; empty when there is none."""
    return "" if interval is None else f"[{100 * interval[0]:.0f}\u2013{100 * interval[1]:.0f}]"


def confusion_entries(views: list[ConfusionView]) -> list[dict[str, Any]]:
    """Template entries of confusion matrices: the view and both matrices' cells."""
    return [{"view": c, "base": matrix(c, c.base), "tuned": matrix(c, c.tuned)} for c in views]


@lru_cache(maxsize=1)
def environment() -> Environment:
    """Autoescaping Jinja environment whose loader finds the shared ``style.css`` and ``macros.html.jinja``."""
    return Environment(loader=PackageLoader("tunesmith.reporting", "templates"), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


@lru_cache(maxsize=8)
def page_template(source: str) -> Template:
    """A page template (its own source text) that may ``{% import "macros.html.jinja" %}`` and
    ``{% include "style.css" %}``."""
    return environment().from_string(source)


def write_page(html: str, path: Path) -> Path:
    """Write a rendered page as UTF-8 (creating parent folders); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
