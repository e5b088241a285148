"""``tunesmith chat RUN_DIR [--prompt TEXT]``: talk to a trained model with its own template."""

from __future__ import annotations

from pathlib import Path

import typer


def chat(
    run_dir: Path = typer.Argument(..., help="A model folder, a run directory (uses model/) or a quickstart folder (uses merged/)."),
    prompt: str | None = typer.Option(None, "--prompt", "-p", help="Answer this one message and exit."),
    system: str | None = typer.Option(None, "--system", help="System prompt (default: the one the run trained with)."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1),
) -> None:
    """Chat with a trained model, rendered with exactly the chat template and system prompt it was trained with."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from tunesmith import infer
    from tunesmith.data.records import Message

    loaded = infer.load(run_dir)
    system_prompt = system if system is not None else loaded.system_prompt

    def reply(history: list[Message]) -> str:
        return infer.generate(loaded.model, loaded.tokenizer, [history], eos_ids=loaded.eos_ids,
                              system_prompt=system_prompt, max_new_tokens=max_new_tokens)[0]

    if prompt is not None:
        typer.echo(reply([Message("user", prompt)]))
        return
    typer.echo(f"chatting with {loaded.path} ({loaded.kind}); empty line or Ctrl-D to quit", err=True)
    history: list[Message] = []
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            break
        if not text:
            break
        history.append(Message("user", text))
        answer = reply(history)
        history.append(Message("assistant", answer))
        typer.echo(f"model> {answer}")
