"""text: pretraining documents from a ``text`` column (or the lines of a ``.txt`` file)."""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from tunesmith.config.schema import DatasetSpec
from tunesmith.data.formats.base import Format
from tunesmith.data.formats.conversation import row_weight
from tunesmith.data.records import Record, Source
from tunesmith.data.rows import ParseContext, text


def _score(keys: Set[str], spec: DatasetSpec) -> int:
    return 1 if (spec.field_text or "text") in keys else 0


def _parse(row: dict[str, Any], source: Source, ctx: ParseContext) -> Record:
    body = text(row, ctx.spec.field_text or "text")
    return Record(kind="text", source=source, fmt="text", text=body, weight=row_weight(row, ctx))


FORMAT = Format(name="text", hint="text", score=_score, parse=_parse)
