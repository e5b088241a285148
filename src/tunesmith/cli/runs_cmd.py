"""``tunesmith runs [DIR]``: list run directories with method, status, steps, best eval loss."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def runs(
    root: str = typer.Argument("outputs", help="Folder to search for run directories."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """List runs (any folder holding a run.json) under DIR."""
    found = sorted(Path(root).rglob("run.json")) if Path(root).is_dir() else []
    rows = []
    for p in found:
        try:
            run = json.loads(p.read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        rows.append({
            "run": str(p.parent), "method": run.get("method"), "adapter": run.get("adapter"),
            "status": run.get("status"), "steps": run.get("global_step"),
            "best_eval_loss": run.get("best_eval_loss"), "train_loss": run.get("train_loss"),
            "started": run.get("start_time"),
        })
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    if not rows:
        typer.echo(f"no runs under {root}")
        return
    from rich.console import Console
    from rich.table import Table

    columns = ("run", "method", "adapter", "status", "steps", "best_eval_loss", "train_loss", "started")
    table = Table(*(c.replace("_", " ") for c in columns))
    for r in rows:
        started = (r["started"] or "")[:16].replace("T", " ") or None  # minutes are enough here
        table.add_row(*(_cell(started if c == "started" else r[c]) for c in columns))
    console = Console()
    Console(width=max(console.width, 140)).print(table)  # whole values even in a narrow pipe


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
