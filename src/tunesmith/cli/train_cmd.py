"""``tunesmith train CONFIG [--from TOOL] [--set k=v] [--resume] [--overwrite] [--max-steps N] [--quiet]
[--nproc N [--nnodes M --node-rank R --master-addr HOST] [--print-launch]]``."""

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
    nproc: int | None = typer.Option(None, "--nproc", min=1, help="Processes on this node (one per GPU): "
                                     "launches through torch.distributed.run (= --set distributed.processes=N)."),
    nnodes: int | None = typer.Option(None, "--nnodes", min=1, help="Nodes (= --set distributed.nodes=M)."),
    node_rank: int = typer.Option(0, "--node-rank", min=0, help="This node's index (multi-node)."),
    master_addr: str | None = typer.Option(None, "--master-addr", help="Node 0's address (multi-node)."),
    master_port: int | None = typer.Option(None, "--master-port", help="Rendezvous port (default 29500)."),
    print_launch: bool = typer.Option(False, "--print-launch", help="Print the launch command and exit "
                                      "(for a SLURM or Kubernetes job)."),
) -> None:
    """Fine-tune (SFT, cpt, DPO, KTO, ORPO, reward model, distillation; LoRA/DoRA/QLoRA/prompt/prefix/IA3/full)."""
    import os

    from tunesmith.config import load_config
    from tunesmith.config.migrate import summary

    overrides = [*set_, *([f"max_steps={max_steps}"] if max_steps is not None else []),
                 *([f"distributed.processes={nproc}"] if nproc is not None else []),
                 *([f"distributed.nodes={nnodes}"] if nnodes is not None else [])]
    cfg = load_config(path, overrides, tool=from_)  # validated before anything heavy is imported
    from tunesmith.train import world

    launching = cfg.distributed is not None and cfg.distributed.launches and not world.launched()
    # said once: by this process, or by rank 0 of a job not started by tunesmith's launcher (which said it)
    if launching or (world.is_main_process() and not os.environ.get("TUNESMITH_LAUNCHER")):
        for line in summary(cfg, path):
            typer.echo(line)
        if cfg.save_only_model:
            typer.echo("save_only_model: true: checkpoints hold no optimizer or scheduler state, so a resume "
                       "restarts both (set it to false to resume exactly)")
    if launching:  # this process launches; torchrun's processes run the job
        passthrough = _passthrough(overrides, resume, overwrite, quiet, from_)
        _launch(cfg, path, passthrough, (node_rank, master_addr, master_port), print_launch)
        return
    from tunesmith.train import run

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
    try:
        result = run(cfg, resume=resume, overwrite=overwrite, quiet=quiet, say=typer.echo)
    finally:
        world.leave()
    if not world.is_main_process():
        return
    if result.status == "unchanged":
        typer.echo(f"model: {result.model_dir}")
        return
    best = f", best eval loss {result.best_eval_loss:.4f}" if result.best_eval_loss is not None else ""
    loss = f"{result.train_loss:.4f}" if result.train_loss is not None else "n/a"
    typer.echo(f"done: {result.global_step} steps, train loss {loss}{best}")
    typer.echo(f"model: {result.model_dir}")


def _passthrough(overrides: list[str], resume: bool, overwrite: bool, quiet: bool, from_: str | None) -> list[str]:
    """The options each launched process gets (the same config, overrides and flags)."""
    out = [arg for o in overrides for arg in ("--set", o)]
    out += ["--resume"] * resume + ["--overwrite"] * overwrite + ["--quiet"] * quiet
    return out + (["--from", from_] if from_ else [])


def _launch(cfg, path: str, passthrough: list[str], where: tuple, print_only: bool) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from tunesmith.train import launch

    rdzv = launch.Rendezvous(*where)
    cmd = launch.command(cfg, path, passthrough, rdzv)
    dist = cfg.distributed
    typer.echo(f"distributed: {dist.backend}, {dist.processes} process(es) x {dist.nodes} node(s) = "
               f"{dist.world_size}; launch command{' (node ' + str(rdzv.node_rank) + ')' if dist.nodes > 1 else ''}:")
    typer.echo(f"  {launch.show(cmd)}")
    if dist.nodes > 1:
        typer.echo("  (on node k run the same command with --node-rank k; every node needs the same files)")
    problems = launch.refusals(cfg, rdzv)
    if print_only:  # printed on a login node, run elsewhere: what this machine lacks is only a note
        for problem in problems:
            typer.echo(f"note (on this machine): {problem}")
        return
    if problems:
        raise launch.LaunchError("cannot launch: " + "; ".join(problems))
    launch.run(cmd, Path(cfg.output_dir), say=typer.echo)
