"""Conversation rows shared by the chat, sharegpt and kto formats.

A conversation is read from the messages column (``field_messages``), or from TRL's
``prompt`` + ``completion`` pair; an optional ``system`` column is prepended and an
optional ``tools`` column is parsed.
"""

from __future__ import annotations

from typing import Any

from tunesmith.data.messages import parse_messages, parse_tools, parse_turns
from tunesmith.data.records import Message, Record, Source
from tunesmith.data.rows import FieldError, ParseContext, column, present, require, text, weight


def turns(row: dict[str, Any], ctx: ParseContext, default: str) -> tuple[tuple[Message, ...], str]:
    """The conversation and the field path of its last turn (for errors)."""
    field = ctx.spec.field_messages or default
    if ctx.spec.field_messages or field in row or not ("prompt" in row and "completion" in row):
        messages = parse_messages(require(row, field), field, ctx)
        return messages, f"{field}[{len(messages) - 1}]"
    prompt = parse_turns(row["prompt"], "prompt", "user", ctx)
    return prompt + parse_turns(row["completion"], "completion", "assistant", ctx), "completion"


def with_system(row: dict[str, Any], messages: tuple[Message, ...], ctx: ParseContext) -> tuple[Message, ...]:
    """Prepend the ``system`` column unless the conversation starts with a system turn."""
    key = column(row, ctx.spec.field_system, "system")
    if not present(row, key) or (messages and messages[0].role == "system"):
        return messages
    return (Message(role="system", content=text(row, key)), *messages)


def tools(row: dict[str, Any], ctx: ParseContext) -> tuple[dict[str, Any], ...]:
    key = column(row, ctx.spec.field_tools, "tools")
    return parse_tools(row.get(key), key)


def row_weight(row: dict[str, Any], ctx: ParseContext) -> float:
    """The row's weight from ``field_weight`` (default 1.0)."""
    key = ctx.spec.field_weight
    return weight(require(row, key), key) if key else 1.0


def check_ends_with_assistant(messages: tuple[Message, ...], last: str, what: str) -> None:
    """The conversation must contain and end with an assistant turn (the trained part)."""
    if messages[-1].role == "assistant":
        return
    if not any(m.role == "assistant" for m in messages):
        raise FieldError(last.rsplit("[", 1)[0], f"has no assistant turn (nothing to train on for {what})")
    role = messages[-1].role
    raise FieldError(last, f"is a {role} turn; a conversation must end with an assistant turn for {what}")


def sft_record(row: dict[str, Any], source: Source, ctx: ParseContext, fmt: str, default: str) -> Record:
    """A chat/sharegpt row as an ``sft`` record."""
    messages, last = turns(row, ctx, default)
    if ctx.sft:
        check_ends_with_assistant(messages, last, "sft")
    return Record(
        kind="sft",
        source=source,
        fmt=fmt,
        messages=with_system(row, messages, ctx),
        tools=tools(row, ctx),
        weight=row_weight(row, ctx),
    )
