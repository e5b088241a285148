"""``tunesmith chat RUN_DIR [--prompt TEXT]`` or ``tunesmith chat --url URL``: talk to a trained model
with its own template, loaded here or behind a running ``tunesmith serve`` (or any OpenAI-compatible server)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from tunesmith.errors import TunesmithError


def chat(
    run_dir: Path | None = typer.Argument(None, help="A model folder, a run directory (uses model/) or a quickstart folder (uses merged/); omit with --url."),
    prompt: str | None = typer.Option(None, "--prompt", "-p", help="Answer this one message and exit."),
    system: str | None = typer.Option(None, "--system", help="System prompt (default: the one the run trained with; with --url, \"\" sends none and the server applies its default)."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1),
    url: str | None = typer.Option(None, "--url", help="Talk to a running server instead (e.g. http://127.0.0.1:8000)."),
    model: str | None = typer.Option(None, "--model", help="With --url: the model name (default: the server's first)."),
    api_key_env: str | None = typer.Option(None, "--api-key-env", help="With --url: environment variable holding the API key."),
) -> None:
    """Chat with a trained model, rendered with exactly the chat template and system prompt it was trained with."""
    from tunesmith.data.records import Message

    if run_dir is None and url is None:
        raise TunesmithError("chat: give a model folder or --url (one of them is required)")
    if run_dir is not None and url is not None:
        raise TunesmithError("chat: give a model folder or --url, not both")
    if url is not None:
        from tunesmith.cli.chat_remote import remote_reply

        reply, where = remote_reply(url, model, api_key_env, system, max_new_tokens)
    else:
        reply, where = _local_reply(run_dir, system, max_new_tokens)  # type: ignore[arg-type]
    if prompt is not None:
        typer.echo(reply([Message("user", prompt)], None))
        return
    typer.echo(f"chatting with {where}; empty line or Ctrl-D to quit", err=True)
    history: list[Message] = []
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            break
        if not text:
            break
        history.append(Message("user", text))
        typer.echo("model> ", nl=False)
        answer = reply(history, lambda piece: typer.echo(piece, nl=False))
        typer.echo("" if url is not None else answer)
        history.append(Message("assistant", answer))


def _local_reply(run_dir: Path, system: str | None, max_new_tokens: int) -> tuple[Callable[..., str], str]:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from tunesmith import infer

    loaded = infer.load(run_dir)
    system_prompt = system if system is not None else loaded.system_prompt

    def reply(history: list, _stream: Callable[[str], None] | None) -> str:
        return infer.generate(loaded.model, loaded.tokenizer, [history], eos_ids=loaded.eos_ids,
                              system_prompt=system_prompt, max_new_tokens=max_new_tokens)[0]

    return reply, f"{loaded.path} ({loaded.kind})"
