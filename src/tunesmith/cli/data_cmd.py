"""``tunesmith data inspect PATH``."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None)


@app.command("inspect")
def inspect(
    path: str = typer.Argument(..., help="File, folder, save_to_disk folder or hub dataset id."),
    type_: str = typer.Option("auto", "--type", help="Force the format (chat, alpaca, sharegpt, ...)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Detect the format, count rows, summarise roles/lengths, show 3 normalised examples."""
    raise NotImplementedError  # filled in by the data package work
