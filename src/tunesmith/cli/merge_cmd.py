"""``tunesmith merge``: fold one adapter (``merge CONFIG``) or merge several fine-tunes
(``merge SOURCE SOURCE... --method ties``); every merge is checked or evaluated."""

from __future__ import annotations

from pathlib import Path

import typer

from tunesmith.errors import TunesmithError


def merge(
    paths: list[Path] = typer.Argument(..., metavar="CONFIG | SOURCE...",
                                       help="The run config that trained the adapter; with --method: two or more "
                                            "run directories / model folders to merge."),
    method: str | None = typer.Option(None, "--method", help="Merge several fine-tunes: linear, slerp, ties, "
                                                              "dare_ties, dare_linear (see methods.yaml)."),
    weights: str | None = typer.Option(None, "--weights", help="Comma-separated weight per source (default 1/N)."),
    density: float | None = typer.Option(None, "--density", help="ties/dare_*: share of each task vector kept (0.5)."),
    t: float | None = typer.Option(None, "--t", help="slerp: 0 = first source, 1 = second (0.5)."),
    base: str | None = typer.Option(None, "--base", help="The common base (default: the one the sources recorded)."),
    full_models: bool = typer.Option(False, "--full-models", help="Adapters: fold them and merge full models with "
                                     "mergekit instead of combining the adapters' weight deltas."),
    seed: int = typer.Option(42, "--seed", help="Seed for DARE's random drop."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder."),
    adapter: Path | None = typer.Option(None, "--adapter", help="CONFIG form: adapter folder (default: model/)."),
    out: Path | None = typer.Option(None, "--out", help="Merged model folder (CONFIG form default: merged/)."),
    probes: int = typer.Option(5, "--probes", min=1, help="Prompts on which merged and adapter logits must agree."),
    set_: list[str] = typer.Option([], "--set", help="CONFIG form: override a config key: key=value."),
) -> None:
    """Fold the adapter into the base and fail unless its logits equal the adapter's; or, with --method,
    merge several fine-tunes of one base and score the merge on every source's eval tasks."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if method is None:
        if len(paths) != 1:
            raise TunesmithError(f"merge: got {len(paths)} paths without --method; merge CONFIG folds one adapter, "
                                 "merge SOURCE SOURCE... --method NAME merges several fine-tunes")
        _fold(paths[0], adapter, out, probes, set_)
        return
    if out is None:
        raise TunesmithError("merge --method: --out DIR is required (the merged model folder)")
    _combine(paths, method, weights, density, t, base, full_models, seed, overwrite, out, probes)


def _fold(config_path: Path, adapter: Path | None, out: Path | None, probes: int, set_: list[str]) -> None:
    from tunesmith import merge as stage
    from tunesmith.config import load_config

    config = load_config(str(config_path), set_)
    result = stage.run(config, stage.probe_prompts(config, probes), adapter_dir=adapter, out_dir=out)
    typer.echo(f"merged model: {result.output_dir}")
    typer.echo(f"check: max |logit diff| {result.max_abs_diff:.2e} on {result.prompts} prompts "
               f"(tolerance {result.tolerance:g}): {'passed' if result.passed else 'FAILED'}")
    stage.raise_if_failed(result)


def _combine(paths: list[Path], method: str, weights: str | None, density: float | None, t: float | None,
             base: str | None, full_models: bool, seed: int, overwrite: bool, out: Path, probes: int) -> None:
    from tunesmith import merge as stage

    options = stage.CombineOptions(tuple(paths), method, out, _floats(weights), density, t, base, full_models, seed,
                                   probes, overwrite)
    result = stage.combine(options)
    knobs = ([f"weights {', '.join(f'{w:g}' for w in result.weights)}"] if result.weights else []) + [
        f"{k}={v:g}" for k, v in result.params.items()]
    typer.echo(f"merged model: {result.output_dir} ({result.method} via {result.backend}, {', '.join(knobs)})")
    for note in result.notes:
        typer.echo(f"note: {note}")
    if result.check is not None:
        typer.echo(f"fold check: max |logit diff| {result.check.max_abs_diff:.2e} vs the combination applied "
                   f"at run time (tolerance {result.check.tolerance:g}): {'passed' if result.check.passed else 'FAILED'}")
    typer.echo(result.comparison.table())
    typer.echo(f"report: {result.output_dir / 'merge_report.json'} (per-model scores under eval/)")
    if result.check is not None:
        stage.raise_if_failed(result.check)


def _floats(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise TunesmithError(f"--weights: expected comma-separated numbers like 0.6,0.4 (got {text!r})") from None
