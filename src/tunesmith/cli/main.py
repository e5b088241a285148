"""The ``tunesmith`` console script: a thin shell over the stage packages.

Each command lives in its own small module and imports heavy libraries (torch,
transformers) only inside its function, so ``tunesmith --help`` stays fast.
"""

from __future__ import annotations

import logging
import sys

import typer

from tunesmith import __version__
from tunesmith.cli import (
    advise_cmd, audit_cmd, chat_cmd, config_cmd, data_cmd, evaluate_cmd, export_cmd, gate_cmd, import_cmd,
    import_gguf_cmd, merge_cmd, plan_cmd, preview_cmd, quickstart_cmd, runs_cmd, serve_cmd, train_cmd,
)
from tunesmith.cli import data_synth_cmd, flywheel_cmd, ui_cmd  # the data flywheel, the dashboard
from tunesmith.errors import EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED, TunesmithError

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
# -> train -> runs -> evaluate -> gate -> merge -> export -> chat -> serve; config helps every stage.
# (name, function, the one-line summary of the command list; `--help` shows the function's docstring)
COMMANDS = [
    ("quickstart", quickstart_cmd.quickstart,
     "The whole lifecycle offline in minutes: base, fine-tune, evaluate, merge, report."),
    ("data", data_cmd.app, "Load, normalise and inspect datasets."),
    ("audit", audit_cmd.audit, "Find dataset defects before training (the data doctor)."),
    ("preview", preview_cmd.preview, "Show tokenized rows with their trained tokens highlighted."),
    ("advise", advise_cmd.advise,
     "Prompting, RAG, fine-tuning or FT+RAG? The seed's decision tables; a starter config."),
    ("plan", plan_cmd.plan, "Memory per device, time and cost of a run before loading weights; method advice."),
    ("train", train_cmd.train, "Fine-tune (sft, cpt, dpo, kto, orpo, rm, distill) into a reproducible run directory."),
    ("runs", runs_cmd.runs, "List runs: method, status, steps, best eval loss."),
    ("evaluate", evaluate_cmd.evaluate, "Score a model on held-out tasks and forgetting probes (optionally against its "
     "base), or compare two models with an LLM judge; writes eval/ and report.html."),
    ("gate", gate_cmd.gate, "Pass or fail a candidate against a baseline's evaluation (CI deployment gate)."),
    ("merge", merge_cmd.merge,
     "Fold an adapter into its base (verified), or merge fine-tunes (linear/slerp/ties/dare)."),
    ("export", export_cmd.export,
     "Export as hf, gguf, ollama or vllm, and verify the export against the trained model."),
    ("chat", chat_cmd.chat, "Chat with a trained model using its own chat template."),
    ("serve", serve_cmd.serve, "OpenAI-compatible server: adapters, streaming, JSON schema, every request logged."),
    ("flywheel", flywheel_cmd.app, "The data flywheel: mine the serving log, review, build the next training set."),
    ("ui", ui_cmd.ui, "Local web dashboard: runs, evaluations, data, review queue, playground, new runs."),
    ("config", config_cmd.config, "Print the resolved config with where each value came from."),
    ("import", import_cmd.import_, "Translate an Axolotl or LLaMA-Factory config into a tunesmith config."),
    ("import-gguf", import_gguf_cmd.import_gguf, "Convert a GGUF file into a verified Hugging Face model folder."),
]
for _name, _command, _summary in COMMANDS:
    if isinstance(_command, typer.Typer):
        app.add_typer(_command, name=_name, help=_summary)
    else:
        app.command(_name, short_help=_summary)(_command)
data_cmd.app.command("synth", short_help="Synthetic rows for a slice from an OpenAI-compatible teacher, filtered and "
                     "audited.")(data_synth_cmd.synth)


# Library log records the command-line user cannot act on. bitsandbytes, imported through peft, warns on CPUs
# with AVX512-BF16 that it could not download an optional 4-bit kernel from the hub ("Failed to load CPU
# gemm_4bit_forward ... pip install kernels"), in the middle of every fine-tune, offline or not.
_QUIET_LOGGERS = ("bitsandbytes.backends.cpu.ops",)


def main() -> None:
    """Run the CLI: user mistakes exit 1 without a traceback, bugs exit 70 with the traceback in a file."""
    for name in _QUIET_LOGGERS:  # the application's own logging set-up, never done by library code
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        app()
    except TunesmithError as exc:
        if _state["debug"]:
            raise
        _print_error(f"[bold red]error:[/] {_escape(str(exc))}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # a bug in tunesmith (or a library): never a bare traceback for the user
        if _state["debug"]:
            import traceback

            traceback.print_exc()
            sys.exit(EXIT_INTERNAL_ERROR)
        where = _write_crash_report(exc)
        head = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
        _print_error(
            f"[bold red]internal error:[/] {_escape(head[:300])}\n"
            f"This is a bug in tunesmith, not a mistake in your input: please report it with the traceback "
            f"written to {_escape(where)} (or rerun with --debug to see it here)."
        )
        sys.exit(EXIT_INTERNAL_ERROR)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _print_error(markup: str) -> None:
    from rich.console import Console

    # escape: messages quote user data and locations like "data.json[row 3]"
    Console(stderr=True, highlight=False, soft_wrap=True).print(markup, markup=True)


def _write_crash_report(exc: BaseException) -> str:
    """The traceback, command line and versions in a file under the temp folder; returns its path."""
    import os
    import platform
    import tempfile
    import time
    import traceback

    name = f"tunesmith-crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    path = os.path.join(tempfile.gettempdir(), name)
    text = (
        f"tunesmith {__version__}, Python {platform.python_version()}, {platform.platform()}\n"
        f"command: {' '.join(sys.argv)}\n\n" + "".join(traceback.format_exception(exc))
    )
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError:
        return "(could not write the traceback file; rerun with --debug)"
    return path


if __name__ == "__main__":
    main()
