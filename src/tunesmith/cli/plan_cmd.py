"""``tunesmith plan CONFIG... [--gpu NAME] [--gpus N] [--price-per-hour P] [--json]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def plan(
    paths: list[str] = typer.Argument(..., help="YAML config file(s)."),
    gpu: str = typer.Option(None, "--gpu", help="Target GPU (config/gpus.yaml names, e.g. A100-80GB); default: hardware.gpu or this machine."),
    gpus: int = typer.Option(None, "--gpus", min=1, help="Number of devices (default: hardware.gpus or 1)."),
    sharding: str = typer.Option(None, "--sharding", help="none | zero1 | zero2 | zero3 | fsdp (default: hardware.sharding)."),
    price: float = typer.Option(None, "--price-per-hour", min=0, help="Price of one GPU-hour, for the cost."),
    mfu: float = typer.Option(None, "--mfu", help="Model FLOPs utilisation assumed for the time (default 0.35, QLoRA 0.25)."),
    weights: str = typer.Option(None, "--weights", help="Base weight storage: fp32 | bf16 | fp16 | int8 | nf4 (default: as train loads them)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: key=value (dotted for nested)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list, one object per config."),
) -> None:
    """Memory per device, time and cost of each run before loading any weights, and the method to use."""
    import json

    from tunesmith.config import load_config
    from tunesmith.errors import TunesmithError
    from tunesmith.plan import PlanOptions, PlanResult, run

    if sharding is not None and sharding not in ("none", "zero1", "zero2", "zero3", "fsdp"):
        raise typer.BadParameter("must be one of none, zero1, zero2, zero3, fsdp", param_hint="--sharding")
    options = PlanOptions(gpu=gpu, gpus=gpus, sharding=sharding, price_per_hour=price, mfu=mfu, weights=weights)
    configs = {path: load_config(path, set_) for path in paths}
    redirects = _redirects(configs)
    results: list[PlanResult] = []
    failed: list[str] = []
    for path, cfg in configs.items():
        try:
            results.append(run(cfg, options, redirects, name=path))
        except TunesmithError as exc:
            if len(paths) == 1:
                raise
            failed.append(f"{path}: {exc}")
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in results], indent=2, default=str))
    else:
        from tunesmith.cli.plan_render import render

        render(results)
    for line in failed:
        typer.echo(f"error: {line}", err=True)
    if failed:
        raise typer.Exit(1)


def _redirects(configs: dict[str, Any]) -> dict[str, str]:
    """A run's future model folder -> that run's base model (DPO on top of an SFT run planned together)."""
    out: dict[str, str] = {}
    for cfg in configs.values():
        model_dir = Path(cfg.output_dir) / "model"
        out[str(model_dir)] = cfg.base_model
        out[str(model_dir.resolve())] = cfg.base_model
    return out
