"""``tunesmith train CONFIG [--from TOOL] [--set k=v] [--resume] [--overwrite] [--quiet]``."""

from __future__ import annotations

import typer


def train(
    path: str = typer.Argument(..., help="YAML config file (tunesmith, Axolotl or LLaMA-Factory)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: key=value (dotted for nested)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last complete checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run in output_dir."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (for CI logs)."),
    from_: str | None = typer.Option(None, "--from", help="axolotl | llamafactory | tunesmith (default: detected)."),
) -> None:
    """Fine-tune (SFT, cpt, DPO, KTO, ORPO, reward model, distillation; LoRA/DoRA/QLoRA/prompt/prefix/IA3/full)."""
    import os

    from tunesmith.config import load_config
    from tunesmith.config.migrate import summary
    from tunesmith.train import run

    cfg = load_config(path, set_, tool=from_)
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
    result = run(cfg, resume=resume, overwrite=overwrite, quiet=quiet, say=typer.echo)
    best = f", best eval loss {result.best_eval_loss:.4f}" if result.best_eval_loss is not None else ""
    loss = f"{result.train_loss:.4f}" if result.train_loss is not None else "n/a"
    typer.echo(f"done: {result.global_step} steps, train loss {loss}{best}")
    typer.echo(f"model: {result.model_dir}")
