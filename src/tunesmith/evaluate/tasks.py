"""Reading an eval task's rows: the records (read exactly as training reads a dataset), each
row's gold answer vetted by the task's scorer, and each row's category."""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.config import EvalTaskSpec
from tunesmith.data.records import Record
from tunesmith.errors import ConfigError, DataError, RowError
from tunesmith.evaluate.scorers import Scorer

_SHOWN = 20


class EvalDataError(DataError):
    """Rows of an eval task that cannot be scored (no gold answer, or one the scorer cannot read)."""

    def __init__(self, task: str, errors: list[RowError], total: int) -> None:
        self.errors, self.total_rows = errors, total
        lines = [str(e) for e in errors[:_SHOWN]]
        if len(errors) > _SHOWN:
            lines.append(f"... and {len(errors) - _SHOWN} more")
        Exception.__init__(self, "\n".join([f"{len(errors)} of {total} rows of eval task {task!r} cannot be scored "
                                    "(each must end with an assistant turn holding the gold answer):", *lines]))


@dataclass
class TaskRows:
    """A task's records and, aligned with them, each row's category (None when it has none)."""

    records: list[Record]
    categories: list[str | None]


def read_task(spec: EvalTaskSpec, scorer: Scorer) -> TaskRows:
    """The task's rows; each must end with an assistant answer its scorer can read (else one
    ``EvalDataError`` listing every bad row with file:line)."""
    from tunesmith.data.ingest import collect

    batch = collect([spec.dataset()], "sft")
    records = batch.records
    errors = [r.error for r in batch.rejected]
    errors += [error for record in records if (error := _gold_error(spec, scorer, record)) is not None]
    if errors:
        errors.sort(key=lambda e: (e.source, e.row or 0))
        raise EvalDataError(spec.name, errors, batch.rows)
    if not records:
        raise ConfigError(f"eval_tasks[{spec.name}].path: {spec.path} has no rows")
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
