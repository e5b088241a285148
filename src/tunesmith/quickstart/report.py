"""The quickstart report: one self-contained HTML page (inline CSS and SVG, no JavaScript, no network)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import Environment, StrictUndefined, Template
from markupsafe import Markup

from tunesmith.quickstart.chart import line_chart

_DASH = "\u2014"


@dataclass
class MetricRow:
    """One metric of one task, base vs fine-tuned; values are fractions 0..1 shown as percentages."""

    task: str
    metric: str
    base: float | None
    tuned: float | None
    main: bool = False
    higher_is_better: bool = True


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
    """One held-out prompt with the gold answer and both models' generations."""

    task: str
    prompt: str
    gold: str
    base: str
    tuned: str
    base_ok: bool
    tuned_ok: bool


@dataclass
class ReportData:
    """Everything the quickstart page shows; see ``render``."""

    title: str
    summary: str
    facts: list[tuple[str, str]]
    curves: dict[str, dict[str, list[tuple[float, float]]]]
    metrics: list[MetricRow]
    confusions: list[ConfusionView]
    examples: list[Example]
    merge: dict[str, Any]
    stages: list[tuple[str, float]]
    notes: list[str] = field(default_factory=list)


def _pct(value: float | None) -> str:
    """0.973 -> '97.3%'; None or non-finite -> an em dash."""
    if value is None or not math.isfinite(value):
        return _DASH
    return f"{value * 100:.1f}%"


def _delta(row: MetricRow) -> tuple[str, str]:
    """(text in percentage points, css class 'better'/'worse'/'same'/'na') of tuned - base."""
    if row.base is None or row.tuned is None or not (math.isfinite(row.base) and math.isfinite(row.tuned)):
        return _DASH, "na"
    points = round((row.tuned - row.base) * 100, 1)
    if points == 0:
        return "0.0 pp", "same"
    improved = (points > 0) == row.higher_is_better
    return f"{points:+.1f} pp", "better" if improved else "worse"


def _seconds(value: float) -> str:
    """Seconds as '0.42 s', '12.3 s' or '3 min 05 s'."""
    if value < 1:
        return f"{value:.2f} s"
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest:02d} s"


def _sci(value: Any) -> str:
    """A number in scientific notation ('3.20e-07'), or an em dash when missing."""
    return _DASH if value is None else f"{float(value):.2e}"


def _matrix(view: ConfusionView, counts: list[list[int]]) -> list[list[dict[str, Any]]]:
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


def _view(data: ReportData) -> dict[str, Any]:
    """Template variables: data as given plus formatted/derived values (charts as trusted SVG markup)."""
    metrics = [{"row": m, "base": _pct(m.base), "tuned": _pct(m.tuned), "delta": _delta(m)} for m in data.metrics]
    charts = [Markup(line_chart(series, title=title, x_label="step", y_label="loss"))
              for title, series in data.curves.items()]
    confusions = [{"view": c, "base": _matrix(c, c.base), "tuned": _matrix(c, c.tuned)} for c in data.confusions]
    merge = {
        "passed": data.merge.get("passed"),
        "max_abs_diff": _sci(data.merge.get("max_abs_diff")),
        "tolerance": _sci(data.merge.get("tolerance")),
        "prompts": data.merge.get("prompts", _DASH),
    } if data.merge else None
    total = sum(seconds for _, seconds in data.stages)
    stages = [{"name": name, "time": _seconds(seconds), "share": _pct(seconds / total) if total else _DASH}
              for name, seconds in data.stages]
    return {"data": data, "metrics": metrics, "charts": charts, "confusions": confusions, "merge": merge,
            "stages": stages, "total": _seconds(total)}


@lru_cache(maxsize=1)
def _template() -> Template:
    """``report.html.jinja`` shipped in this package, autoescaped."""
    source = files("tunesmith.quickstart").joinpath("report.html.jinja").read_text(encoding="utf-8")
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.from_string(source)


def render(data: ReportData) -> str:
    """The report as one standalone HTML page (every value HTML-escaped; no external resources)."""
    return _template().render(**_view(data))


def write(data: ReportData, path: Path) -> Path:
    """Render ``data`` to ``path`` as UTF-8 (creating parent folders); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data), encoding="utf-8")
    return path
