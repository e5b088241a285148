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

    table = Table("run", "method", "adapter", "status", "steps", "best eval loss", "train loss", "started")
    for r in rows:
        fmt = lambda v: "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))  # noqa: E731
        table.add_row(*(fmt(r[k]) for k in ("run", "method", "adapter", "status", "steps", "best_eval_loss", "train_loss", "started")))
    Console().print(table)
