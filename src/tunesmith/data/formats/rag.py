"""rag: ``context`` + ``question`` -> ``answer``; an empty answer becomes the abstention text.

The user turn holds the instruction, the context (a string or a list of passages) and the
question; ``Record.meta["abstention"]`` is True when the answer was the abstention.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from tunesmith.config.schema import DatasetSpec
from tunesmith.data.formats.base import Format, has_all
from tunesmith.data.formats.conversation import row_weight, with_system
from tunesmith.data.records import Message, Record, Source
from tunesmith.data.rows import FieldError, ParseContext, got, require, text


def _keys(spec: DatasetSpec) -> tuple[str, str, str]:
    return spec.field_context or "context", spec.field_question or "question", spec.field_answer or "answer"


def _score(keys: Set[str], spec: DatasetSpec) -> int:
    context, question, answer = _keys(spec)
    return (3 if answer in keys else 2) if has_all(keys, context, question) else 0


def _context(value: Any, key: str) -> str:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = "\n\n".join(v for v in value if v.strip())
    if not isinstance(value, str):
        raise FieldError(key, f"must be a string or a list of strings {got(value)}")
    if not value.strip():
        raise FieldError(key, "is empty")
    return value


def _parse(row: dict[str, Any], source: Source, ctx: ParseContext) -> Record:
    spec = ctx.spec
    context_key, question_key, answer_key = _keys(spec)
    context = _context(require(row, context_key), context_key)
    question = text(row, question_key)
    answer = text(row, answer_key, required=False)
    abstained = not answer.strip()
    instruction = spec.instruction or (
        "Answer the question using only the context. "
        f"If the context does not contain the answer, reply: {spec.abstention}"
    )
    messages = (
        Message(role="user", content=f"{instruction}\n\nContext:\n{context}\n\nQuestion: {question}"),
        Message(role="assistant", content=spec.abstention if abstained else answer),
    )
    return Record(
        kind="sft",
        source=source,
        fmt="rag",
        messages=with_system(row, messages, ctx),
        weight=row_weight(row, ctx),
        meta={"abstention": abstained},
    )


FORMAT = Format(name="rag", hint="context, question, answer", score=_score, parse=_parse)
