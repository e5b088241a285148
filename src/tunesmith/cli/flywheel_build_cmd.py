"""``tunesmith flywheel build --reviewed Q --base-data D... [--eval-data E...] --out DATA``."""

from __future__ import annotations

from pathlib import Path

import typer


def build(
    reviewed: Path = typer.Option(..., "--reviewed", help="The reviewed queue (queue.jsonl, queue.csv or reviewed.jsonl)."),
    out: Path = typer.Option(..., "--out", help="Folder for train.jsonl, manifest.json, removed.jsonl, audit.json."),
    base_data: list[str] = typer.Option([], "--base-data", help="The original training data (replay source; "
                                        "repeatable); the replay keeps each file's share."),
    eval_data: list[str] = typer.Option([], "--eval-data", help="Eval/golden sets no training row may copy (repeatable)."),
    positives: Path | None = typer.Option(None, "--positives", help="Production positives (default: positives.jsonl "
                                          "beside the queue)."),
    positives_share: float = typer.Option(0.25, "--positives-share", min=0.0, help="Positives per reviewed row."),
    replay_ratio: float = typer.Option(0.1, "--replay-ratio", min=0.0, max=0.99,
                                       help="Share of the final set drawn from --base-data (against forgetting)."),
    seed: int = typer.Option(0, "--seed"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a dataset already in --out."),
) -> None:
    """Reviewed failures + a share of production positives + a replay sample; near-duplicates and rows copying an
    eval row removed (listed in removed.jsonl); audited; manifest.json with counts and fingerprints."""
    from tunesmith.config.schema import DatasetSpec
    from tunesmith.flywheel import BuildOptions
    from tunesmith.flywheel import build as stage

    result = stage(BuildOptions(
        reviewed=reviewed, out=out, base_data=tuple(DatasetSpec(path=p) for p in base_data),
        eval_data=tuple(DatasetSpec(path=p) for p in eval_data), positives=positives,
        positives_share=positives_share, replay_ratio=replay_ratio, seed=seed, overwrite=overwrite))
    for error in result.review_errors:
        typer.echo(f"queue line rejected: {error}", err=True)
    for row in result.removed:
        where = f" (copies {row['eval_row']})" if row["reason"] == "contaminated" else ""
        typer.echo(f"removed ({row['reason']}{where}): {row['messages'][-2]['content'][:70]!r}")
    typer.echo(", ".join(f"{k} {v}" for k, v in result.counts.items()))
    audit = result.manifest["audit"]
    typer.echo(f"audit: {audit['errors']} error(s), {audit['warnings']} warning(s) (audit.json)")
    typer.echo(f"dataset: {result.train_file}")
