"""``tunesmith gate --candidate RUN|DIR --baseline RUN|DIR [--config gate.yaml]``: may the candidate ship?"""

from __future__ import annotations

from pathlib import Path

import typer


def gate(
    candidate: Path = typer.Option(..., "--candidate", help="The candidate's evaluation: a run folder, its eval/ "
                                   "folder, a quickstart folder or an eval_<name>.json."),
    baseline: Path = typer.Option(..., "--baseline", help="The baseline's evaluation (same forms)."),
    config_path: Path | None = typer.Option(None, "--config", help="Gate thresholds (YAML; default: the built-in ones)."),
    out: Path | None = typer.Option(None, "--out", help="Where gate.json, gate.md and gate.html go "
                                    "(default: beside the candidate's eval_<name>.json)."),
) -> None:
    """Golden score >= 0.98 x baseline, format >= 0.95, capability >= 0.80 x baseline, stop rate >= 0.95
    (each configurable). Prints the Markdown summary; exit 0 when the gate passes, 1 when it fails."""
    from tunesmith import gate as stage
    from tunesmith.config.loader import load_yaml_model
    from tunesmith.config.schema import GateConfig

    config = load_yaml_model(config_path, GateConfig, "gate config") if config_path else GateConfig()
    result = stage.run(candidate, baseline, config, out_dir=out)
    typer.echo((result.files[1]).read_text("utf-8"))
    typer.echo(f"gate.json, gate.md, gate.html: {result.files[0].parent}/")
    if not result.passed:
        raise typer.Exit(1)
