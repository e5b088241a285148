"""chat: ``messages`` of role/content dicts (or TRL ``prompt`` + ``completion``)."""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from tunesmith.config.schema import DatasetSpec
from tunesmith.data.formats.base import Format, has_all
from tunesmith.data.formats.conversation import sft_record
from tunesmith.data.records import Record, Source
from tunesmith.data.rows import ParseContext


def _score(keys: Set[str], spec: DatasetSpec) -> int:
    if (spec.field_messages or "messages") in keys:
        return 1
    return 2 if has_all(keys, "prompt", "completion") else 0


def _parse(row: dict[str, Any], source: Source, ctx: ParseContext) -> Record:
    return sft_record(row, source, ctx, "chat", "messages")


FORMAT = Format(name="chat", hint="messages | prompt, completion", score=_score, parse=_parse)
