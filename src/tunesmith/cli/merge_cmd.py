"""``tunesmith merge CONFIG [--adapter DIR] [--out DIR]``: merge the adapter and verify the merged logits."""

from __future__ import annotations

from pathlib import Path

import typer


def merge(
    config_path: Path = typer.Argument(..., metavar="CONFIG", help="The run config that trained the adapter."),
    adapter: Path | None = typer.Option(None, "--adapter", help="Adapter folder (default: the run's model/)."),
    out: Path | None = typer.Option(None, "--out", help="Merged model folder (default: the run's merged/)."),
    probes: int = typer.Option(5, "--probes", min=1, help="Prompts on which merged and adapter logits must agree."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key: key=value (dotted for nested)."),
) -> None:
    """Fold the adapter into the base, save a standalone model, and fail unless its logits equal the adapter's."""
    from transformers.utils import logging as hf_logging

    from tunesmith import merge as stage
    from tunesmith.config import load_config

    hf_logging.disable_progress_bar()
    config = load_config(str(config_path), set_)
    result = stage.run(config, stage.probe_prompts(config, probes), adapter_dir=adapter, out_dir=out)
    typer.echo(f"merged model: {result.output_dir}")
    typer.echo(f"check: max |logit diff| {result.max_abs_diff:.2e} on {result.prompts} prompts "
               f"(tolerance {result.tolerance:g}): {'passed' if result.passed else 'FAILED'}")
    stage.raise_if_failed(result)
