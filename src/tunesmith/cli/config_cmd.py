"""``tunesmith config CONFIG [--from TOOL] [--set k=v] [--json]``."""

from __future__ import annotations

import typer


def config(
    path: str = typer.Argument(..., help="YAML config file (tunesmith, Axolotl or LLaMA-Factory)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: key=value (dotted for nested)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of YAML."),
    from_: str | None = typer.Option(None, "--from", help="axolotl | llamafactory | tunesmith (default: detected)."),
) -> None:
    """Print the resolved config; a comment on each value says where it came from."""
    from tunesmith.config import load_config
    from tunesmith.config.annotate import annotated_yaml, notes_block

    cfg = load_config(path, set_, tool=from_)
    if as_json:
        typer.echo(cfg.model_dump_json(indent=2))
        return
    typer.echo(annotated_yaml(cfg, full=True), nl=False)
    typer.echo(notes_block(cfg, path), nl=False)
