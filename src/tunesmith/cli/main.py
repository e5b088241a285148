"""The ``tunesmith`` console script: a thin shell over the stage packages.

Each command lives in its own small module and imports heavy libraries (torch,
transformers) only inside its function, so ``tunesmith --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from tunesmith import __version__
from tunesmith.cli import (
    audit_cmd, chat_cmd, config_cmd, data_cmd, evaluate_cmd, import_gguf_cmd, merge_cmd, preview_cmd, quickstart_cmd,
    runs_cmd, train_cmd,
)
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


# quickstart first (the whole lifecycle); then lifecycle order: data -> audit -> preview (tokenize)
# -> train -> runs -> evaluate -> merge -> chat; config helps every stage
app.command("quickstart", help="The whole lifecycle offline in minutes: base, fine-tune, evaluate, merge, report.")(
    quickstart_cmd.quickstart
)
app.add_typer(data_cmd.app, name="data", help="Load, normalise and inspect datasets.")
app.command("audit", help="Find dataset defects before training (the data doctor).")(audit_cmd.audit)
app.command("preview", help="Show tokenized rows with their trained tokens highlighted.")(preview_cmd.preview)
app.command("train", help="Fine-tune (sft, cpt, dpo) into a reproducible run directory.")(train_cmd.train)
app.command("runs", help="List runs: method, status, steps, best eval loss.")(runs_cmd.runs)
app.command("evaluate", help="Score a model on held-out tasks (eval_tasks), optionally against its base.")(
    evaluate_cmd.evaluate
)
app.command("merge", help="Merge an adapter into its base and verify the merged logits.")(merge_cmd.merge)
app.command("chat", help="Chat with a trained model using its own chat template.")(chat_cmd.chat)
app.command("import-gguf", help="Convert a GGUF file into a verified Hugging Face model folder.")(import_gguf_cmd.import_gguf)
app.command("config", help="Print the resolved config (defaults filled, aliases resolved).")(config_cmd.config)


def main() -> None:
    try:
        app()
    except TunesmithError as exc:
        if _state["debug"]:
            raise
        from rich.console import Console
        from rich.markup import escape

        # escape: messages quote user data and locations like "data.json[row 3]"
        console = Console(stderr=True, highlight=False, soft_wrap=True)
        console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
