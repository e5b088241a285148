"""The gate's verdict for people: a Markdown summary (CI job log, PR comment) and the HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.gate.checks import Line

_MARK = {"pass": "\u2705 pass", "fail": "\u274c FAIL", "warn": "\u26a0\ufe0f warn", "info": "\u2139\ufe0f"}


def _value(value: float | None) -> str:
    return "\u2014" if value is None else f"{value * 100:.1f}%"


def _threshold(line: Line) -> str:
    if line.threshold is None:
        return ""
    sign = "\u2265" if line.op == ">=" else "\u2264"
    return f"{sign} {_value(line.threshold)}"


def _table(lines: list[Line]) -> list[str]:
    out = ["| check | subject | metric | candidate | baseline | threshold | result | note |",
           "|---|---|---|---:|---:|---:|---|---|"]
    for line in lines:
        out.append(f"| {line.check} | {line.subject} | {line.metric} | {_value(line.candidate)} | "
                   f"{_value(line.baseline)} | {_threshold(line)} | {_MARK[line.status]} | {line.note} |")
    return out


def markdown(result: Any) -> str:
    """Headline (passed / FAILED with counts), the inputs, every check line; per-category
    lines in a collapsed section."""
    fails, warns = len(result.failures), len(result.warnings)
    if result.passed:
        head = "## \u2705 tunesmith gate: passed" + (f" ({warns} warning{'s' * (warns != 1)})" if warns else "")
    else:
        head = (f"## \u274c tunesmith gate: FAILED ({fails} failing check{'s' * (fails != 1)}"
                + (f", {warns} warning{'s' * (warns != 1)}" if warns else "") + ")")
    main = [line for line in result.lines if line.status != "info"]
    detail = [line for line in result.lines if line.status == "info"]
    out = [head, "", f"candidate: `{result.candidate}`  ", f"baseline: `{result.baseline}`", ""]
    out += _table(main) if main else ["No check ran."]
    if detail:
        out += ["", f"<details><summary>Per category and other figures, not gated ({len(detail)} lines)</summary>", "",
                *_table(detail),
                "", "</details>"]
    return "\n".join(out) + "\n"


def write_html(result: Any, path: Path, sides: tuple[Any, Any]) -> Path:
    """``gate.html``: the verdict lines plus the evaluation report of ``sides`` (baseline, candidate:
    ``evaluate.report.Side``, as the gate read them)."""
    from tunesmith.evaluate.report import render_page
    from tunesmith.reporting.view import write_page

    page = render_page(*sides,
                       title="tunesmith gate",
                       summary=f"{len(result.failures)} failing check(s), {len(result.warnings)} warning(s).",
                       gate=[{"line": line, "candidate": _value(line.candidate), "baseline": _value(line.baseline),
                              "threshold": _threshold(line), "mark": _MARK[line.status]} for line in result.lines],
                       passed=result.passed)
    return write_page(page, path)
