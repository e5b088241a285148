"""``tunesmith quickstart [--out DIR] [--fast]``: the whole lifecycle offline, in minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def quickstart(
    out: Path = typer.Option(Path("outputs/quickstart"), "--out", help="Output folder (a previous quickstart's is replaced)."),
    fast: bool = typer.Option(False, "--fast", help="Smaller base and data: about a minute, for CI."),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Where the built base model is cached (default: $TUNESMITH_CACHE or ~/.cache/tunesmith)."
    ),
) -> None:
    """Build (or reuse) a tiny pretrained base, fine-tune it with LoRA on generated tasks, evaluate base vs
    fine-tuned on held-out data, merge and verify, and write DIR/report.html."""
    import os

    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rich.console import Console
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight loading/saving bars; tunesmith's own progress stays
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

    from tunesmith.quickstart.run import QuickstartOptions, run

    console = Console(highlight=False)
    result = run(QuickstartOptions(out_dir=out, fast=fast, cache_dir=cache_dir),
                 say=lambda line: console.print(line, markup=False))
    _print_summary(console, result.summary)
    console.print(f"report: {result.report}", markup=False)
    if not result.passed:
        console.print("quickstart FAILED: " + ("the merge check failed" if not result.summary["merge"]["passed"]
                                               else "the fine-tuned model did not beat the base"), style="bold red")
        raise typer.Exit(1)


def _print_summary(console: Any, summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="held-out test split: base vs fine-tuned", title_justify="left")
    for column, justify in (("task", "left"), ("metric", "left"), ("base", "right"), ("fine-tuned", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for task, entry in summary["metrics"].items():
        main = entry["main"]
        for name in [main] + [k for k in entry["metrics"] if k != main and not k.startswith("field_")]:
            value = entry["metrics"][name]
            label = f"{name} *" if name == main else name
            table.add_row(f"{task} (n={entry['n']})", label, _pct(value["base"]), _pct(value["tuned"]))
    console.print(table)
    merge = summary["merge"]
    console.print(f"merge check: {'passed' if merge['passed'] else 'FAILED'} (max |logit diff| "
                  f"{merge['max_abs_diff']:.2e} on {merge['prompts']} prompts, tolerance {merge['tolerance']:g})",
                  markup=False)
    console.print(f"total: {summary['total_seconds']:.0f} s  (" +
                  ", ".join(f"{name} {secs:.0f} s" for name, secs in summary["stages"]) + ")", markup=False)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
