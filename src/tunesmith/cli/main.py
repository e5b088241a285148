"""The ``tunesmith`` console script: a thin shell over the stage packages.

Each command lives in its own small module and imports heavy libraries (torch,
transformers) only inside its function, so ``tunesmith --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from tunesmith import __version__
from tunesmith.cli import config_cmd, data_cmd, preview_cmd, runs_cmd, train_cmd
from tunesmith.errors import TunesmithError

app = typer.Typer(
    name="tunesmith",
    help="Base LLM + your data -> fine-tuned, evaluated, gated and served model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tunesmith {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    _state["debug"] = debug


app.command("config", help="Print the resolved config (defaults filled in, aliases resolved).")(config_cmd.config)
app.add_typer(data_cmd.app, name="data", help="Load, normalise and inspect datasets.")
app.command("preview", help="Show tokenized rows with trained tokens highlighted, and a summary.")(preview_cmd.preview)
app.command("train", help="Fine-tune (SFT, cpt, DPO; LoRA/DoRA/QLoRA/prompt/prefix/IA3/full) into a run directory.")(
    train_cmd.train
)
app.command("runs", help="List run directories with method, status, steps and best eval loss.")(runs_cmd.runs)


def main() -> None:
    try:
        app()
    except TunesmithError as exc:
        if _state["debug"]:
            raise
        from rich.console import Console
        from rich.markup import escape

        # escape: messages quote user data and locations like "data.json[row 3]"
        Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
