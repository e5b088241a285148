"""kto: a conversation (``messages`` or ``prompt`` + ``completion``) and a boolean ``label``."""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from tunesmith.config.schema import DatasetSpec
from tunesmith.data.formats.base import Format, has_all
from tunesmith.data.formats.conversation import check_ends_with_assistant, row_weight, tools, turns, with_system
from tunesmith.data.records import Record, Source
from tunesmith.data.rows import FieldError, ParseContext, column, got, require

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _score(keys: Set[str], spec: DatasetSpec) -> int:
    if not ((spec.field_label or "label") in keys or "kto_tag" in keys):
        return 0
    if (spec.field_messages or "messages") in keys:
        return 2
    return 3 if has_all(keys, "prompt", "completion") else 0


def _label(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise FieldError(key, f"must be true or false {got(value)}")


def _parse(row: dict[str, Any], source: Source, ctx: ParseContext) -> Record:
    messages, last = turns(row, ctx, "messages")
    check_ends_with_assistant(messages, last, "kto")
    key = column(row, ctx.spec.field_label, "label", "kto_tag")
    return Record(
        kind="kto",
        source=source,
        fmt="kto",
        messages=with_system(row, messages, ctx),
        tools=tools(row, ctx),
        label=_label(require(row, key), key),
        weight=row_weight(row, ctx),
    )


FORMAT = Format(name="kto", hint="messages, label | prompt, completion, label", score=_score, parse=_parse)
