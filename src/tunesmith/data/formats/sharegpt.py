"""sharegpt: ``conversations`` of from/value dicts (tags configurable), optional ``system``/``tools``."""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from tunesmith.config.schema import DatasetSpec
from tunesmith.data.formats.base import Format
from tunesmith.data.formats.conversation import sft_record
from tunesmith.data.records import Record, Source
from tunesmith.data.rows import ParseContext


def _score(keys: Set[str], spec: DatasetSpec) -> int:
    return 1 if (spec.field_messages or "conversations") in keys else 0


def _parse(row: dict[str, Any], source: Source, ctx: ParseContext) -> Record:
    return sft_record(row, source, ctx, "sharegpt", "conversations")


FORMAT = Format(name="sharegpt", hint="conversations", score=_score, parse=_parse)
