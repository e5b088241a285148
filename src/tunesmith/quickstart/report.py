"""The quickstart report: one self-contained HTML page (inline CSS and SVG, no JavaScript, no network)."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import Template
from markupsafe import Markup

from tunesmith.reporting.chart import line_chart
from tunesmith.reporting.view import (
    DASH, ConfusionView, Example, MetricRow, confusion_entries, metric_entries, page_template, pct, sci, seconds,
    write_page,
)

__all__ = ["ConfusionView", "Example", "MetricRow", "ReportData", "render", "write"]


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


def _view(data: ReportData) -> dict[str, Any]:
    """Template variables: data as given plus formatted/derived values (charts as trusted SVG markup)."""
    metrics = metric_entries(data.metrics)
    charts = [Markup(line_chart(series, title=title, x_label="step", y_label="loss"))
              for title, series in data.curves.items()]
    confusions = confusion_entries(data.confusions)
    merge = {
        "passed": data.merge.get("passed"),
        "max_abs_diff": sci(data.merge.get("max_abs_diff")),
        "tolerance": sci(data.merge.get("tolerance")),
        "prompts": data.merge.get("prompts", DASH),
    } if data.merge else None
    total = sum(secs for _, secs in data.stages)
    stages = [{"name": name, "time": seconds(secs), "share": pct(secs / total) if total else DASH}
              for name, secs in data.stages]
    return {"data": data, "metrics": metrics, "charts": charts, "confusions": confusions, "merge": merge,
            "stages": stages, "total": seconds(total)}


def _template() -> Template:
    """``report.html.jinja`` shipped in this package, autoescaped, with the shared report pieces."""
    return page_template(files("tunesmith.quickstart").joinpath("report.html.jinja").read_text(encoding="utf-8"))


def render(data: ReportData) -> str:
    """The report as one standalone HTML page (every value HTML-escaped; no external resources)."""
    return _template().render(**_view(data))


def write(data: ReportData, path: Path) -> Path:
    """Render ``data`` to ``path`` as UTF-8 (creating parent folders); returns ``path``."""
    return write_page(render(data), path)
