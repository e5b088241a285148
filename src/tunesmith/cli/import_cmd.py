"""``tunesmith import FILE [--from axolotl|llamafactory] [--out tunesmith.yaml]``."""

from __future__ import annotations

import typer


def import_(
    path: str = typer.Argument(..., help="An Axolotl or LLaMA-Factory YAML config."),
    from_: str | None = typer.Option(None, "--from", help="axolotl | llamafactory (default: detected from the keys)."),
    out: str | None = typer.Option(None, "--out", "-o", help="Write the tunesmith config here (default: print it)."),
) -> None:
    """Write the equivalent native tunesmith config, with a comment on every translated, defaulted or ignored key."""
    from pathlib import Path

    from tunesmith.config import load_config
    from tunesmith.config.convert import native_config

    cfg = load_config(path, tool=from_)
    text = native_config(cfg, path)
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        from tunesmith.errors import TunesmithError

        raise TunesmithError(f"--out {out}: cannot write the config ({exc.strerror or exc})") from None
    typer.echo(f"wrote {out} ({len(cfg.notes)} keys noted; check it with: tunesmith config {out})")
