"""``tunesmith train CONFIG [--set k=v] [--resume] [--overwrite] [--quiet]``."""

from __future__ import annotations

import typer


def train(
    path: str = typer.Argument(..., help="YAML config file."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: key=value (dotted for nested)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last complete checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run in output_dir."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (for CI logs)."),
) -> None:
    """Fine-tune (SFT, cpt, DPO; LoRA/DoRA/QLoRA/prompt/prefix/IA3/full) and save a run directory."""
    from tunesmith.config import load_config
    from tunesmith.train import run

    cfg = load_config(path, set_)
    result = run(cfg, resume=resume, overwrite=overwrite, quiet=quiet, say=typer.echo)
    best = f", best eval loss {result.best_eval_loss:.4f}" if result.best_eval_loss is not None else ""
    loss = f"{result.train_loss:.4f}" if result.train_loss is not None else "n/a"
    typer.echo(f"done: {result.global_step} steps, train loss {loss}{best}")
    typer.echo(f"model: {result.model_dir}")
