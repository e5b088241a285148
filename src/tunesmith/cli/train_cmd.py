"""``tunesmith train CONFIG [--set k=v] [--resume] [--overwrite] [--max-steps N] [--quiet]``."""

from __future__ import annotations

import typer


def train(
    path: str = typer.Argument(..., help="YAML config file."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: key=value (dotted for nested)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the last complete checkpoint; with --max-steps, extend a completed run."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace the tunesmith run in output_dir (never a folder without run.json)."
    ),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Same as --set max_steps=N."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (for CI logs)."),
) -> None:
    """Fine-tune (SFT, cpt, DPO; LoRA/DoRA/QLoRA/prompt/prefix/IA3/full) and save a run directory."""
    from tunesmith.config import load_config

    overrides = [*set_, *([f"max_steps={max_steps}"] if max_steps is not None else [])]
    cfg = load_config(path, overrides)  # validated before anything heavy is imported
    from tunesmith.train import run

    result = run(cfg, resume=resume, overwrite=overwrite, quiet=quiet, say=typer.echo)
    if result.status == "unchanged":
        typer.echo(f"model: {result.model_dir}")
        return
    best = f", best eval loss {result.best_eval_loss:.4f}" if result.best_eval_loss is not None else ""
    loss = f"{result.train_loss:.4f}" if result.train_loss is not None else "n/a"
    typer.echo(f"done: {result.global_step} steps, train loss {loss}{best}")
    typer.echo(f"model: {result.model_dir}")
