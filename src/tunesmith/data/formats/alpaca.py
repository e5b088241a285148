"""alpaca: ``instruction`` (+ ``input``) -> ``output``, optional ``system`` and ``history``.

The user turn is ``instruction\\ninput`` (LLaMA-Factory's convention); ``history`` is a list
of ``[prompt, response]`` pairs placed before it.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from tunesmith.config.schema import DatasetSpec
from tunesmith.data.formats.base import Format, has_all
from tunesmith.data.formats.conversation import row_weight, with_system
from tunesmith.data.records import Message, Record, Source
from tunesmith.data.rows import FieldError, ParseContext, got, text


def _keys(spec: DatasetSpec) -> tuple[str, str, str]:
    return spec.field_instruction or "instruction", spec.field_input or "input", spec.field_output or "output"


def _score(keys: Set[str], spec: DatasetSpec) -> int:
    instruction, _, output = _keys(spec)
    return 2 if has_all(keys, instruction, output) else 0


def _history(value: Any, field: str) -> list[Message]:
    if value is None or value == "":
        return []
    if not isinstance(value, list):
        raise FieldError(field, f"must be a list of [prompt, response] pairs {got(value)}")
    turns: list[Message] = []
    for i, pair in enumerate(value):
        ok = isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(p, str) and p.strip() for p in pair)
        if not ok:
            raise FieldError(f"{field}[{i}]", f"must be a [prompt, response] pair of non-empty strings {got(pair)}")
        turns += [Message(role="user", content=pair[0]), Message(role="assistant", content=pair[1])]
    return turns


def prompt_text(row: dict[str, Any], instruction: str, input_key: str) -> str:
    """``instruction`` joined with the optional ``input`` by a newline."""
    prompt = text(row, instruction)
    extra = text(row, input_key, required=False)
    return f"{prompt}\n{extra}" if extra.strip() else prompt


def _parse(row: dict[str, Any], source: Source, ctx: ParseContext) -> Record:
    instruction, input_key, output = _keys(ctx.spec)
    history = _history(row.get(ctx.spec.field_history or "history"), ctx.spec.field_history or "history")
    messages = (
        *history,
        Message(role="user", content=prompt_text(row, instruction, input_key)),
        Message(role="assistant", content=text(row, output)),
    )
    return Record(
        kind="sft", source=source, fmt="alpaca", messages=with_system(row, messages, ctx), weight=row_weight(row, ctx)
    )


FORMAT = Format(name="alpaca", hint="instruction, output", score=_score, parse=_parse)
