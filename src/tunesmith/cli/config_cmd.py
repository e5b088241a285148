"""``tunesmith config CONFIG [--set k=v] [--json]``."""

from __future__ import annotations

import typer


def config(
    path: str = typer.Argument(..., help="YAML config file."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: key=value (dotted for nested)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of YAML."),
) -> None:
    """Print the resolved config (defaults filled in, aliases resolved)."""
    from tunesmith.config import load_config
    from tunesmith.config.loader import dump_yaml

    cfg = load_config(path, set_)
    if as_json:
        typer.echo(cfg.model_dump_json(indent=2))
    else:
        typer.echo(dump_yaml(cfg), nl=False)
