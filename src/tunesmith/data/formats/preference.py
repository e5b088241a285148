"""preference: a prompt with a ``chosen`` and a ``rejected`` continuation.

Accepted layouts (each side a string, one message, or a list of messages):

- ``prompt`` (string or messages) + ``chosen`` + ``rejected`` (TRL, alpaca's ``instruction``/``input``); sides
  that repeat the prompt's turns first (UltraFeedback-binarized: full conversations) lose them;
- sharegpt ranking: ``conversations`` + ``chosen``/``rejected`` messages (LLaMA-Factory);
- full conversations only (``chosen``/``rejected`` or ``chosen_messages``/``rejected_messages``):
  the prompt is their common leading turns.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from tunesmith.config.schema import DatasetSpec
from tunesmith.data.formats.alpaca import prompt_text
from tunesmith.data.formats.base import Format
from tunesmith.data.formats.conversation import row_weight, tools, with_system
from tunesmith.data.messages import json_turns, parse_turns
from tunesmith.data.records import Message, Record, Source
from tunesmith.data.rows import FieldError, ParseContext, column, require

_PROMPT_KEYS = ("prompt", "conversations", "messages", "instruction")
Turns = tuple[Message, ...]


def _score(keys: Set[str], spec: DatasetSpec) -> int:
    chosen = spec.field_chosen or ("chosen" if "chosen" in keys else "chosen_messages")
    rejected = spec.field_rejected or ("rejected" if "rejected" in keys else "rejected_messages")
    if chosen not in keys or rejected not in keys:
        return 0
    prompts = (spec.field_prompt, spec.field_messages, *_PROMPT_KEYS)
    return 3 if any(k in keys for k in prompts if k) else 2


def _prompt(row: dict[str, Any], ctx: ParseContext) -> Turns:
    spec = ctx.spec
    key = spec.field_prompt or spec.field_messages or next((k for k in _PROMPT_KEYS if k in row), None)
    if key is None:
        return ()
    value = require(row, key)
    if isinstance(value, str) and json_turns(value, ctx) is None:
        return (Message(role="user", content=prompt_text(row, key, spec.field_input or "input")),)
    return parse_turns(value, key, "user", ctx)


def _same(a: Message, b: Message) -> bool:
    return (a.role, a.content.strip(), a.tool_calls, a.reasoning) == (
        b.role, b.content.strip(), b.tool_calls, b.reasoning
    )


def _split_prefix(chosen: Turns, rejected: Turns, keys: tuple[str, str]) -> tuple[Turns, Turns, Turns]:
    """Full conversations -> (common prompt, chosen tail, rejected tail)."""
    n = 0
    while n < min(len(chosen), len(rejected)) and _same(chosen[n], rejected[n]):
        n += 1
    if n == 0:
        raise FieldError(keys[0], f"and {keys[1]} share no leading turns, so there is no prompt (add a prompt column)")
    return chosen[:n], chosen[n:], rejected[n:]


def _after(prompt: Turns, side: Turns) -> Turns:
    """``side`` without the prompt's turns when it starts with them (else as it is): the prompt is rendered once."""
    n = len(prompt)
    if len(side) > n and all(_same(a, b) for a, b in zip(prompt, side[:n])):
        return side[n:]
    return side


def _check(chosen: Turns, rejected: Turns, keys: tuple[str, str]) -> None:
    if len(chosen) == len(rejected) and all(_same(a, b) for a, b in zip(chosen, rejected, strict=True)):
        raise FieldError(keys[0], f"is identical to {keys[1]} (nothing to prefer)")
    for side, key in ((chosen, keys[0]), (rejected, keys[1])):
        if not side:
            raise FieldError(key, "has no turns after the prompt (it is a prefix of the other side)")
        if side[-1].role != "assistant":
            raise FieldError(key, f"ends with a {side[-1].role} turn; it must end with an assistant turn")


def _parse(row: dict[str, Any], source: Source, ctx: ParseContext) -> Record:
    spec = ctx.spec
    keys = (
        column(row, spec.field_chosen, "chosen", "chosen_messages"),
        column(row, spec.field_rejected, "rejected", "rejected_messages"),
    )
    chosen = parse_turns(require(row, keys[0]), keys[0], "assistant", ctx)
    rejected = parse_turns(require(row, keys[1]), keys[1], "assistant", ctx)
    prompt = _prompt(row, ctx)
    if not prompt:
        prompt, chosen, rejected = _split_prefix(chosen, rejected, keys)
    else:  # UltraFeedback's layout: a prompt column and full conversations that repeat it
        chosen, rejected = _after(prompt, chosen), _after(prompt, rejected)
    _check(chosen, rejected, keys)
    return Record(
        kind="preference",
        source=source,
        fmt="preference",
        messages=with_system(row, prompt, ctx),
        chosen=chosen,
        rejected=rejected,
        tools=tools(row, ctx),
        weight=row_weight(row, ctx),
    )


FORMAT = Format(
    name="preference",
    hint="prompt, chosen, rejected | conversations, chosen, rejected | chosen_messages, rejected_messages",
    score=_score,
    parse=_parse,
)
