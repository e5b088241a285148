"""classification: ``text`` + ``label`` (checked against ``labels`` when given) -> a chat turn.

The user turn is ``instruction`` (or "Classify the text as one of: ...") then the text;
the assistant answers with the label, which is also kept in ``Record.label``.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from tunesmith.errors import did_you_mean
from tunesmith.config.schema import DatasetSpec
from tunesmith.data.formats.base import Format, has_all
from tunesmith.data.formats.conversation import row_weight, with_system
from tunesmith.data.records import Message, Record, Source
from tunesmith.data.rows import FieldError, ParseContext, got, require, text


def _score(keys: Set[str], spec: DatasetSpec) -> int:
    return 2 if has_all(keys, spec.field_text or "text", spec.field_label or "label") else 0


def _label(row: dict[str, Any], key: str, labels: list[str] | None) -> str:
    value = require(row, key)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise FieldError(key, f"must be a string or an integer {got(value)}")
    label = str(value).strip()
    if not label:
        raise FieldError(key, "is empty")
    if labels and label not in labels:
        raise FieldError(key, f"'{label}' is not one of {', '.join(labels)}{did_you_mean(label, labels)}")
    return label


def _parse(row: dict[str, Any], source: Source, ctx: ParseContext) -> Record:
    spec = ctx.spec
    body = text(row, spec.field_text or "text")
    label = _label(row, spec.field_label or "label", spec.labels)
    prompt = spec.instruction or (f"Classify the text as one of: {', '.join(spec.labels)}." if spec.labels else "")
    messages = (
        Message(role="user", content=f"{prompt}\n\n{body}" if prompt else body),
        Message(role="assistant", content=label),
    )
    return Record(
        kind="sft",
        source=source,
        fmt="classification",
        messages=with_system(row, messages, ctx),
        label=label,
        weight=row_weight(row, ctx),
    )


FORMAT = Format(name="classification", hint="text, label", score=_score, parse=_parse)
