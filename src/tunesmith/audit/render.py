"""Show an audit report: a rich summary table for people, a standalone HTML page for sharing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.audit.report import AuditReport

if TYPE_CHECKING:
    from rich.console import Console

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _summary(report: AuditReport) -> dict[str, Any]:
    return {
        "rows": report.rows,
        "splits": report.stats.get("splits", {}),
        "counts": {s: report.count(s) for s in ("error", "warning", "info")},
        "lengths": report.stats.get("token_lengths", {}),
        "exact": report.stats.get("token_lengths_exact", False),
        "skipped": report.stats.get("skipped_checks", {}),
    }


def print_report(report: AuditReport, console: Console) -> None:
    """The findings as a table, then sizes, token lengths per split and skipped checks."""
    from rich.markup import escape
    from rich.table import Table

    s = _summary(report)
    splits = ", ".join(f"{k} {v}" for k, v in s["splits"].items() if v)
    c = s["counts"]
    console.print(f"[bold]Data audit[/]: {s['rows']} rows ({splits}): [bold red]{c['error']} error(s)[/], "
                  f"[yellow]{c['warning']} warning(s)[/], {c['info']} info")
    if report.findings:
        table = Table(show_lines=True, expand=True)
        for name, kw in (("severity", {}), ("check", {"no_wrap": True}), ("count", {"justify": "right"}),
                         ("finding / fix", {"ratio": 3}), ("examples", {"ratio": 1, "overflow": "fold"})):
            table.add_column(name, **kw)
        for f in report.findings:
            table.add_row(
                f"[{_STYLE[f.severity]}]{f.severity}[/]", f.check, str(f.count),
                f"{escape(f.message)}\n[dim]fix:[/] {escape(f.fix)}", escape("\n".join(f.examples)),
            )
        console.print(table)
    else:
        console.print("[green]No findings.[/]")
    unit = "tokens" if s["exact"] else "tokens, estimated (no tokenizer)"
    for split, v in s["lengths"].items():
        console.print(f"  {split}: p50 {v['p50']}  p90 {v['p90']}  p99 {v['p99']}  max {v['max']} {unit}")
    for name, why in s["skipped"].items():
        console.print(f"  [dim]skipped {name}: {escape(why)}[/]")


def to_html(report: AuditReport) -> str:
    """A standalone HTML page of the report (``report.html.jinja``)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=select_autoescape(["jinja"]))
    template = env.get_template("report.html.jinja")
    return template.render(findings=report.findings, **_summary(report))
