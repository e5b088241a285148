"""``tunesmith train CONFIG [--from TOOL] [--set k=v] [--resume] [--overwrite] [--max-steps N] [--quiet]``."""

from __future__ import annotations

import typer


def train(
    path: str = typer.Argument(..., help="YAML config file (tunesmith, Axolotl or LLaMA-Factory)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: key=value (dotted for nested)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the last complete checkpoint; with --max-steps, extend a completed run."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace the tunesmith run in output_dir (never a folder without run.json)."
    ),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Same as --set max_steps=N."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (for CI logs)."),
    from_: str | None = typer.Option(None, "--from", help="axolotl | llamafactory | tunesmith (default: detected)."),
) -> None:
    """Fine-tune (SFT, cpt, DPO, KTO, ORPO, reward model, distillation; LoRA/DoRA/QLoRA/prompt/prefix/IA3/full)."""
    import os

    from tunesmith.config import load_config
    from tunesmith.config.migrate import summary

    overrides = [*set_, *([f"max_steps={max_steps}"] if max_steps is not None else [])]
    cfg = load_config(path, overrides, tool=from_)  # validated before anything heavy is imported
    from tunesmith.train import run

    for line in summary(cfg, path):
        typer.echo(line)
    if cfg.save_only_model:
        typer.echo("save_only_model: true: checkpoints hold no optimizer or scheduler state, so a resume "
                   "restarts both (set it to false to resume exactly)")
    if cfg.overwrite_output_dir and not resume and not overwrite:
        typer.echo("overwrite_output_dir: true: an existing run in output_dir is replaced (as --overwrite)")
        overwrite = True
    # the CLI (not the library) sets process environment: tracker names wandb reads from it
    for var, value in (("WANDB_PROJECT", cfg.tracking.project), ("WANDB_ENTITY", cfg.tracking.entity)):
        if cfg.report_to == "wandb" and value:
            os.environ.setdefault(var, value)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # ORPO and GKD come from trl.experimental by choice
    if quiet:  # the CLI (not the library) silences transformers' weight-loading bars
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    result = run(cfg, resume=resume, overwrite=overwrite, quiet=quiet, say=typer.echo)
    if result.status == "unchanged":
        typer.echo(f"model: {result.model_dir}")
        return
    best = f", best eval loss {result.best_eval_loss:.4f}" if result.best_eval_loss is not None else ""
    loss = f"{result.train_loss:.4f}" if result.train_loss is not None else "n/a"
    typer.echo(f"done: {result.global_step} steps, train loss {loss}{best}")
    typer.echo(f"model: {result.model_dir}")
