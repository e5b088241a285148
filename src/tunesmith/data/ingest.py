"""Ingest datasets: read rows, detect (or force) the format, normalise, collect every bad row.

All rows are checked; bad rows are raised together as one DataError (``on_bad_rows: error``)
or written with their reason to ``rejected_rows.jsonl`` and counted (``skip``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config.schema import DatasetSpec
from tunesmith.data.formats import REGISTRY, describe, detect
from tunesmith.data.formats.base import Format
from tunesmith.data.readers import DataSourceError, RawRow
from tunesmith.data.records import Record, Source
from tunesmith.data.rows import FieldError, ParseContext, got
from tunesmith.data.sources import open_rows
from tunesmith.data.store import SPILL_ROWS, RowStore, spill
from tunesmith.errors import ConfigError, DataError, RowError

log = logging.getLogger("tunesmith.data")
_HEAD = 50  # rows whose keys decide the format


@dataclass
class IngestResult:
    """Records of the given specs, the rows skipped (policy skip) and where the data came from."""

    records: list[Record]
    errors: list[RowError]
    formats: dict[str, str]
    fingerprint: str
    rows: int = 0

    @property
    def skipped(self) -> int:
        """Rows left out under ``on_bad_rows: skip`` (each one is in ``errors``)."""
        return len(self.errors)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A bad row: the error and the raw value, for rejected_rows.jsonl."""

    error: RowError
    raw: Any

    def to_dict(self) -> dict[str, Any]:
        """The rejected_rows.jsonl entry: source, row, line, field, reason, raw."""
        e = self.error
        return {"source": e.source, "row": e.row, "line": e.line, "field": e.field, "reason": e.message,
                "stage": "data", "raw": self.raw}


@dataclass
class Collected:
    records: list[Record] | RowStore[Record] = field(default_factory=list)  # on disk past spill_rows rows
    rejected: list[Rejected] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    fingerprint: str = ""
    per_spec: list[int] = field(default_factory=list)  # records read from each spec, in order (dataset mixing)


def ingest(
    specs: list[DatasetSpec], method: str = "sft", on_bad_rows: str = "error", rejected_path: Path | None = None
) -> IngestResult:
    """Read and normalise ``specs``; bad rows raise (``error``) or are written and counted (``skip``)."""
    batch = collect(specs, method)
    errors = settle(batch.rejected, batch.rows, on_bad_rows, rejected_path)
    return IngestResult(batch.records, errors, batch.formats, batch.fingerprint, batch.rows)


def collect(specs: list[DatasetSpec], method: str, spill_rows: int | None = None) -> Collected:
    """Records and rejected rows of every spec, plus a fingerprint of bytes + settings. Past
    ``spill_rows`` (default ``SPILL_ROWS``) records they are kept on disk (``data.store.RowStore``),
    streamed as they are read."""
    spill_rows = SPILL_ROWS if spill_rows is None else spill_rows
    out = Collected()
    digest = hashlib.sha256(f"method={method}".encode())
    for spec in specs:
        rows, data_digest = open_rows(spec)
        digest.update(spec.model_dump_json().encode() + data_digest.encode())
        before = len(out.records)
        out.formats[spec.path] = _collect_spec(spec, rows, method, out, spill_rows)
        out.per_spec.append(len(out.records) - before)
    out.fingerprint = digest.hexdigest()
    return out


def specs_fingerprint(specs: list[DatasetSpec], method: str) -> str:
    """The fingerprint ``collect`` gives these specs, from the files' bytes alone (no row parsed)."""
    digest = hashlib.sha256(f"method={method}".encode())
    for spec in specs:
        _, data_digest = open_rows(spec)  # the rows iterator is lazy: nothing is parsed
        digest.update(spec.model_dump_json().encode() + data_digest.encode())
    return digest.hexdigest()


def settle(rejected: list[Rejected], rows: int, on_bad_rows: str, rejected_path: Path | None) -> list[RowError]:
    """Apply the bad-row policy; returns the skipped rows' errors."""
    if on_bad_rows not in ("error", "skip"):
        raise ConfigError(f"on_bad_rows: must be one of error, skip (got {on_bad_rows!r})")
    errors = [r.error for r in rejected]
    if errors and on_bad_rows == "error":
        raise DataError(errors, total_rows=rows)
    if on_bad_rows == "skip" and rejected_path is not None:
        write_rejected(rejected_path, rejected)
    if errors:
        where = f" (each with its reason in {rejected_path})" if rejected_path else ""
        between = sum(e.row is None for e in errors)  # file problems between rows, no row lost
        bad = len(errors) - between
        also = f" and {between} problem{'s' * (between != 1)} between rows" if between else ""
        log.warning("skipped %d invalid row%s out of %d%s%s", bad, "s" * (bad != 1), rows, also, where)
    return errors


def write_rejected(path: Path, rejected: list[Rejected], more: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
    """One JSON object per left-out row (source, row, line, field, reason, stage, raw): the data
    stage's ``rejected`` and ``more`` entries (rows tokenization dropped), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for entry in [*(item.to_dict() for item in rejected), *more]:
            fh.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
    tmp.replace(path)


def _collect_spec(spec: DatasetSpec, rows: Iterator[RawRow], method: str, out: Collected, spill_rows: int) -> str:
    if spec.max_samples is not None:  # LLaMA-Factory max_samples: the first N rows of the dataset
        rows = _first_rows(rows, spec.max_samples)
    head, rows = _head(rows)
    fmt = _choose(spec, [r.data for r in head if r.error is None and isinstance(r.data, dict)], method)
    ctx = ParseContext.create(spec, method)
    for raw in rows:
        out.rows += raw.row is not None or raw.error is None  # a problem between rows (a missing ',') is no row
        if raw.error is not None:
            out.rejected.append(_reject(raw, raw.field, raw.error))
        elif not isinstance(raw.data, dict):
            out.rejected.append(_reject(raw, None, f"row must be a JSON object {got(raw.data)}"))
        elif fmt is None:  # not reached: every usable row was in the detection sample
            out.rejected.append(_reject(raw, None, "the format could not be detected"))
        else:
            try:
                out.records.append(fmt.parse(raw.data, Source(raw.source, raw.row or 0, raw.line), ctx))
            except FieldError as exc:
                out.rejected.append(_reject(raw, exc.field, exc.message))
            else:
                out.records = spill(out.records, spill_rows)
    return fmt.name if fmt else "unknown"


def _first_rows(rows: Iterator[RawRow], n: int) -> Iterator[RawRow]:
    """The first ``n`` rows and the problems between them (a missing ',' is reported, but is no row)."""
    for raw in rows:
        if n <= 0:
            return
        n -= raw.row is not None or raw.error is None
        yield raw


def _head(rows: Iterator[RawRow]) -> tuple[list[RawRow], Iterator[RawRow]]:
    """The first rows, up to ``_HEAD`` usable ones, and an iterator over all rows."""
    head: list[RawRow] = []
    usable = 0
    for raw in rows:
        head.append(raw)
        usable += raw.error is None and isinstance(raw.data, dict)
        if usable >= _HEAD:
            break
    return head, itertools.chain(head, rows)


def _choose(spec: DatasetSpec, sample: list[dict[str, Any]], method: str | None = None) -> Format | None:
    if spec.type != "auto":
        return REGISTRY[spec.type]
    if not sample:
        return None
    column = spec.field_text or "text"
    if _trains_on_text(method) and all(isinstance(row.get(column), str) for row in sample):
        return REGISTRY["text"]  # cpt: a text column is the text, whatever sits beside it (a label, a url)
    name = detect(sample, spec)
    if name is None:
        keys = ", ".join(sorted({str(k) for row in sample for k in row})) or "none"
        raise DataSourceError(
            spec.path,
            f"cannot detect the format: the rows have keys {keys}, which fit none of: {describe()}. "
            "Set type: and field_* to map your columns.",
        )
    return REGISTRY[name]


def _trains_on_text(method: str | None) -> bool:
    from tunesmith.config.methods import methods

    spec = methods().get(method or "")
    return spec is not None and spec.records == "text"


def _reject(raw: RawRow, field: str | None, message: str) -> Rejected:
    return Rejected(RowError(raw.source, raw.row, field, message, raw.line), raw.data)
