"""Reading an eval task's rows: the records (read exactly as training reads a dataset), each
row's gold answer vetted by the task's scorer, and each row's category."""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.config import EvalTaskSpec
from tunesmith.data.records import Record
from tunesmith.errors import ConfigError, DataError, RowError
from tunesmith.evaluate.scorers import Scorer


@dataclass
class TaskRows:
    """A task's records and, aligned with them, each row's category (None when it has none)."""

    records: list[Record]
    categories: list[str | None]


def read_task(spec: EvalTaskSpec, scorer: Scorer) -> TaskRows:
    """The task's rows; each must end with an assistant answer its scorer can read (else one
    ``DataError`` listing every bad row with file:line)."""
    from tunesmith.data import ingest

    records = ingest([spec.dataset()], method="sft").records
    if not records:
        raise ConfigError(f"eval_tasks[{spec.name}].path: {spec.path} has no rows")
    errors = [error for record in records if (error := _gold_error(spec, scorer, record)) is not None]
    if errors:
        raise DataError(errors, total_rows=len(records))
    return TaskRows(records, _categories(spec, records))


def _gold_error(spec: EvalTaskSpec, scorer: Scorer, record: Record) -> RowError | None:
    def bad(message: str) -> RowError:
        return RowError(record.source.file, record.source.row, "messages", message, record.source.line)

    if record.kind != "sft" or not record.messages or record.messages[-1].role != "assistant":
        return bad(f"must end with the assistant's gold answer (eval task {spec.name!r})")
    if not record.messages[-1].content.strip() and not record.messages[-1].tool_calls:
        return bad(f"the gold answer is empty (eval task {spec.name!r})")
    problem = scorer.check_gold(record.messages[-1].content)
    return None if problem is None else bad(problem)


def _categories(spec: EvalTaskSpec, records: list[Record]) -> list[str | None]:
    """Each record's ``field_category`` value from its raw row (None where the row has none)."""
    from tunesmith.data.sources import open_rows

    rows, _ = open_rows(spec.dataset())
    found: dict[tuple[str, int | None], str] = {}
    for raw in rows:
        value = raw.data.get(spec.field_category) if isinstance(raw.data, dict) else None
        if value is not None and str(value).strip():
            found[(raw.source, raw.row)] = str(value).strip()
    return [found.get((r.source.file, r.source.row)) for r in records]
