"""``tunesmith evaluate CONFIG [--model DIR] [--base]``: score a model on the config's held-out tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def evaluate(
    config_path: Path = typer.Argument(..., metavar="CONFIG", help="Run config with eval_tasks."),
    model: str | None = typer.Option(None, "--model", help="Model folder to score (default: the run's model/)."),
    base: bool = typer.Option(False, "--base", help="Also score base_model and show both side by side."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key: key=value (dotted for nested)."),
) -> None:
    """Generate on every held-out task with the training template and system prompt, and score the replies."""
    import json

    from transformers.utils import logging as hf_logging

    from tunesmith import evaluate as stage
    from tunesmith.config import load_config

    hf_logging.disable_progress_bar()
    config = load_config(str(config_path), set_)
    out = Path(config.output_dir) / "eval"
    results = {"model": stage.run(config, model, name="model", out_dir=out)}
    if base:
        results = {"base": stage.run(config, config.base_model, name="base", out_dir=out), **results}
    table = {name: {task: t.score.metrics for task, t in r.tasks.items()} for name, r in results.items()}
    if as_json:
        typer.echo(json.dumps(table, indent=2))
        return
    _print(table, {task: t.score.main for task, t in results["model"].tasks.items()})
    typer.echo(f"metrics and every generation: {out}/")


def _print(table: dict[str, dict[str, dict[str, float]]], mains: dict[str, str]) -> None:
    from rich.console import Console
    from rich.table import Table

    view = Table(title="held-out tasks", title_justify="left")
    view.add_column("task")
    view.add_column("metric")
    for name in table:
        view.add_column(name, justify="right")
    first: dict[str, Any] = next(iter(table.values()))
    for task, metrics in first.items():
        for metric in metrics:
            label = f"{metric} *" if metric == mains[task] else metric
            view.add_row(task, label, *(f"{100 * table[n][task][metric]:.1f}%" for n in table))
    Console(highlight=False).print(view)
