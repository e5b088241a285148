"""``tunesmith flywheel review QUEUE [--import]``: walk the queue in the terminal, or validate an edited one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def review(
    queue: Path = typer.Argument(..., help="queue.jsonl from `flywheel mine` (or an edited queue.csv with --import)."),
    import_: bool = typer.Option(False, "--import", help="Validate an edited queue and write reviewed.jsonl "
                                 "(malformed lines are listed with file:line; the rest is kept)."),
    out: Path | None = typer.Option(None, "--out", help="With --import: the file to write, or the folder "
                                    "for reviewed.jsonl (default: beside the queue)."),
) -> None:
    """Walk-through: for each unreviewed item, highest priority first: [a]ccept the model's reply, [c]orrect it
    (type the answer), [r]eject (not something to train on), [s]kip, [q]uit. Saved after every answer."""
    from tunesmith.flywheel import import_queue, walk

    if import_:
        result = import_queue(queue, out)
        for error in result.errors:
            typer.echo(f"rejected: {error}", err=True)
        counts = ", ".join(f"{k} {v}" for k, v in result.verdicts.items())
        typer.echo(f"{result.items} items kept ({counts}); {len(result.errors)} malformed line(s) rejected")
        typer.echo(f"reviewed: {result.out}")
        if result.errors:
            raise typer.Exit(1)
        return
    result = walk(queue, _ask)
    typer.echo(", ".join(f"{k} {v}" for k, v in result.answered.items()) + f"; {result.remaining} left to review")


def _ask(item: dict[str, Any]) -> Any:
    from tunesmith.flywheel import Answer

    typer.echo(f"\n#{item['rank']}  {item['size']} request(s)  priority {item['priority']}  "
               f"signals: {', '.join(f'{k} x{v}' for k, v in item['signals'].items())}")
    for reason in item["reasons"]:
        typer.echo(f"  - {reason}")
    for m in item["messages"]:
        typer.echo(f"[{m['role']}] {m['content']}")
    typer.echo(f"[model] {item['reply']}")
    if item.get("suggestion"):
        typer.echo(f"[user's correction] {item['suggestion']}")
    while True:
        choice = typer.prompt("[a]ccept / [c]orrect / [r]eject / [s]kip / [q]uit", default="s").strip().lower()[:1]
        actions = {"a": "accept", "c": "correct", "r": "reject", "s": "skip", "q": "quit"}
        if choice not in actions:
            continue
        if actions[choice] != "correct":
            return Answer(actions[choice])
        text = typer.prompt("corrected answer", default=item.get("suggestion") or "").strip()
        if text:
            return Answer("correct", text)
