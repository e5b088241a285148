"""``tunesmith flywheel run FLYWHEEL.yaml [--overwrite]``: one iteration end to end."""

from __future__ import annotations

from pathlib import Path

import typer


def run(
    config_path: Path = typer.Argument(..., metavar="FLYWHEEL.yaml", help="FLYWHEEL.yaml (keys: FlywheelConfig in config/schema.py)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace this iteration's dataset, run and lineage."),
) -> None:
    """mine -> (reviewed queue given) build -> train (from the previous adapter or the base) -> evaluate -> gate
    against the serving model; writes lineage.json. Exit 1 when the gate fails."""
    from tunesmith import flywheel
    from tunesmith.config.loader import load_yaml_model
    from tunesmith.config.schema import FlywheelConfig

    config = load_yaml_model(config_path, FlywheelConfig, "flywheel config")
    result = flywheel.run(config, config_path.parent, overwrite=overwrite, say=typer.echo)
    if result.lineage is not None:
        typer.echo(f"lineage: {result.lineage}")
    if result.gate_passed is False:
        raise typer.Exit(1)
