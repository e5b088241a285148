"""The evaluation report: one self-contained HTML page built from what ``evaluate`` wrote to disk
(``eval_<name>.json`` + ``generations_<name>.jsonl``) for one model or two side by side (base vs
fine-tune, baseline vs candidate). ``tunesmith evaluate`` and ``tunesmith gate`` both write it.

Sections: metrics (headline starred, weak signals marked), generation health, per-category bars,
forgetting probes, confusion matrices, judge score distribution, pairwise results, and the
biggest regressions side by side. Built from the shared pieces in ``tunesmith.reporting``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from markupsafe import Markup

from tunesmith.evaluate.output import read_generations
from tunesmith.reporting.bars import bar_chart
from tunesmith.reporting.view import (
    ConfusionView, Example, MetricRow, confusion_entries, metric_entries, page_template, write_page,
)

LOWER_IS_BETTER = {"false_abstention_rate", "max_tokens_rate", "loop_rate", "repeated_ngram_rate",
                   "hallucination_rate", "judge_failure_rate"}
HEALTH_FRACTIONS = ("stop_rate", "max_tokens_rate", "loop_rate", "repeated_ngram_rate")
MAX_EXAMPLES = 10


@dataclass
class Side:
    """One model's evaluation as written to disk: the summary and every scored row."""

    label: str
    path: Path
    summary: dict[str, Any]
    rows: list[dict[str, Any]]


def load_side(path: str | Path, label: str) -> Side:
    """Read ``eval_<name>.json`` and the ``generations_<name>.jsonl`` beside it (absent: no rows)."""
    path = Path(path)
    return Side(label, path, json.loads(path.read_text("utf-8")), read_generations(path))


def metric_rows(left: Side | None, right: Side) -> tuple[list[MetricRow], list[MetricRow]]:
    """(metric rows, generation-health rows): each task's metrics, left and right side by side."""
    metrics, health = [], []
    for task, entry in right.summary["tasks"].items():
        other = (left.summary["tasks"].get(task) if left else None) or {}
        main, weak = entry["main"], " (weak signal)" if entry.get("weak") else ""
        for name in [main] + [m for m in entry["metrics"] if m != main]:
            metrics.append(MetricRow(task, name + weak, other.get("metrics", {}).get(name), entry["metrics"][name],
                                     name == main, name not in LOWER_IS_BETTER,
                                     *(_interval(e) if name == main else None for e in (other, entry))))
        for name in HEALTH_FRACTIONS:
            if name in (entry.get("health") or {}):
                health.append(MetricRow(task, name, (other.get("health") or {}).get(name), entry["health"][name],
                                        False, name not in LOWER_IS_BETTER))
    probes, base_probes = right.summary.get("probes"), (left.summary.get("probes") if left else None) or {}
    if probes:
        metrics.append(MetricRow("probes", "accuracy", base_probes.get("accuracy"), probes["accuracy"], True))
        for cat, entry in probes["categories"].items():
            before = base_probes.get("categories", {}).get(cat, {}).get("accuracy")
            metrics.append(MetricRow("probes", f"{cat} (n={entry['n']})", before, entry["accuracy"]))
        for name in HEALTH_FRACTIONS:
            if name in probes.get("health", {}):
                health.append(MetricRow("probes", name, (base_probes.get("health") or {}).get(name),
                                        probes["health"][name], False, name not in LOWER_IS_BETTER))
    return metrics, health


def _interval(entry: dict[str, Any]) -> tuple[float, float] | None:
    """A task's headline interval as written in ``eval_<name>.json`` (older files: none)."""
    iv = entry.get("interval")
    return (iv["low"], iv["high"]) if isinstance(iv, dict) else None


def _lengths(left: Side | None, right: Side) -> list[dict[str, Any]]:
    out = []
    for task, entry in right.summary["tasks"].items():
        h = entry.get("health") or {}
        if "mean_reply_tokens" in h:
            other = ((left.summary["tasks"].get(task) or {}).get("health") or {}) if left else {}
            out.append({"task": task, "gold": f"{h['mean_gold_tokens']:.1f}", "right": f"{h['mean_reply_tokens']:.1f}",
                        "left": f"{other['mean_reply_tokens']:.1f}" if "mean_reply_tokens" in other else "\u2014"})
    return out


def charts(left: Side | None, right: Side) -> list[Markup]:
    """Bar charts: each task's main metric per category, and a judge's score distribution."""
    out = []
    for task, entry in right.summary["tasks"].items():
        main, cats = entry["main"], entry.get("categories") or {}
        other = ((left.summary["tasks"].get(task) or {}).get("categories") or {}) if left else {}
        if cats:
            groups = {f"{cat} (n={c['n']})": {**({left.label: other[cat]["metrics"].get(main)} if cat in other else {}),
                                               right.label: c["metrics"].get(main)} for cat, c in cats.items()}
            out.append(Markup(bar_chart(groups, title=f"{task}: {main} per category")))
        dist = (entry.get("extra") or {}).get("distribution")
        if entry["scorer"] == "judge" and dist:
            theirs = ((left.summary["tasks"].get(task) or {}).get("extra") or {}).get("distribution", {}) if left else {}
            groups = {f"{crit} = {score}": {**({left.label: theirs.get(crit, {}).get(score, 0)} if left else {}),
                                            right.label: count}
                      for crit, counts in dist.items() for score, count in counts.items()}
            out.append(Markup(bar_chart(groups, title=f"{task}: judge score distribution (rows)", percent=False)))
    return out


def confusions(left: Side | None, right: Side) -> list[ConfusionView]:
    """Each labelled task's confusion matrix, left and right (same label columns)."""
    out = []
    for task, entry in right.summary["tasks"].items():
        c = entry.get("confusion")
        other = ((left.summary["tasks"].get(task) or {}).get("confusion") if left else None) or c
        if c and other and other["columns"] == c["columns"]:
            out.append(ConfusionView(task, c["labels"], c["columns"], other["matrix"], c["matrix"]))
    return out


def _regressions(left: Side | None, right: Side) -> list[Example]:
    """The rows whose score fell most from left to right (or, alone, the model's wrong rows)."""
    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return row["task"], row.get("source"), row["prompt"]

    if left is None:
        wrong = [r for r in right.rows if not r.get("correct")][:MAX_EXAMPLES]
        return [Example(r["task"], r["prompt"], r["gold"], "", r["output"], False, False) for r in wrong]
    before = {key(r): r for r in left.rows}
    drops = []
    for r in right.rows:
        b = before.get(key(r))
        if b is not None and b.get("score") is not None and r.get("score") is not None and b["score"] > r["score"]:
            drops.append((b["score"] - r["score"], b, r))
    drops.sort(key=lambda d: -d[0])
    return [Example(r["task"], r["prompt"], r["gold"], b["output"], r["output"], bool(b.get("correct")),
                    bool(r.get("correct"))) for _, b, r in drops[:MAX_EXAMPLES]]


def render_page(left: Side | None, right: Side, *, title: str, summary: str, gate: list[dict[str, Any]] | None = None,
                passed: bool | None = None, compare: dict[str, Any] | None = None) -> str:
    """The page for ``right`` (and ``left`` beside it, when given)."""
    metrics, health = metric_rows(left, right)
    source = files("tunesmith.evaluate").joinpath("report.html.jinja").read_text(encoding="utf-8")
    return page_template(source).render(
        title=title, summary=summary, left=left.label if left else None, right=right.label,
        models=[s for s in (left, right) if s], metrics=metric_entries(metrics), health=metric_entries(health),
        lengths=_lengths(left, right), charts=charts(left, right),
        confusions=confusion_entries(confusions(left, right)), examples=_regressions(left, right),
        gate=gate, passed=passed, compare=compare, contamination=right.summary.get("contamination"))


def write(left: Side | None, right: Side, path: Path, **kwargs: Any) -> Path:
    """Render and write the page (see ``render_page``)."""
    return write_page(render_page(left, right, **kwargs), path)
