"""Rows of a CSV file with a header, each with its line; a bad record never takes later rows with it.

Quoted cells may span lines, so an unbalanced quote makes the csv module read the rest of the
file as one cell. A record that fails (a csv error, or a field count different from the
header's) is reported at its first line and reading resumes at the next line, so only that
line is lost. Invalid bytes (kept by ``surrogateescape`` decoding) spoil only their record.
The file is read line by line (issue 20: a CSV larger than memory streams like JSONL).
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tunesmith.data import rowcheck

@dataclass(slots=True)
class CsvRecord:
    """One record (first line, 1-based) as a header-keyed dict, or the problem with it."""

    line: int
    values: dict[str, str] | list[str] | None
    problem: str | None = None


class _Lines:
    """The file's lines, read as asked for and kept only from the first line of the record being
    read on (a bad record restarts reading at its second line, which must still be there)."""

    def __init__(self, source: Iterable[str]):
        self.source = iter(source)
        self.kept: deque[str] = deque()
        self.first = 0  # index of kept[0]

    def get(self, k: int) -> str | None:
        """Line ``k`` (0-based), or None past the end."""
        while k >= self.first + len(self.kept):
            line = next(self.source, None)
            if line is None:
                return None
            self.kept.append(line)
        return self.kept[k - self.first]

    def release(self, k: int) -> None:
        """Forget the lines before ``k``."""
        while self.first < k and self.kept:
            self.kept.popleft()
            self.first += 1

    def read_from(self, k: int) -> Iterator[str]:
        while (line := self.get(k)) is not None:
            yield line
            k += 1


def records(lines: Iterable[str], limit: int) -> Iterator[CsvRecord]:
    """Records after the header line, from the file's lines (decoded with surrogateescape, each
    with its newline), read as they come: only the lines of the record being read are held."""
    kept = _Lines(lines)
    reader = csv.reader(kept.read_from(0), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        yield CsvRecord(1, None, f"invalid CSV header: {exc}")
        return
    if header is None:
        return
    start: int | None = reader.line_num
    while start is not None and kept.get(start) is not None:
        start = yield from _read_from(kept, start, header, limit)


def _read_from(lines: _Lines, start: int, header: list[str], limit: int) -> Iterator[CsvRecord]:
    """Records from line index ``start``; returns where to restart after a bad record (None: the end)."""
    reader = csv.reader(lines.read_from(start), strict=True)  # strict: a mis-paired quote is an error
    while True:
        first = start + reader.line_num  # index of the record's first line
        lines.release(first)
        try:
            values = next(reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            yield CsvRecord(first + 1, None, _csv_problem(exc))
            return first + 1
        last = start + reader.line_num - 1
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            problem = f"has {len(values)} fields but the header has {len(header)}"
            if last > first:
                problem += " (an unbalanced quote? only this line was skipped)"
            yield CsvRecord(first + 1, values if last == first else None, problem)
            if last > first:
                return first + 1
            continue
        yield _checked(first + 1, dict(zip(header, values, strict=True)), limit)


def _checked(line: int, row: dict[str, str], limit: int) -> CsvRecord:
    size = sum(len(v) for v in row.values())
    for value in row.values():
        bad = rowcheck.bad_byte(value)
        if bad is not None:
            byte = rowcheck.byte_of(value[bad])
            return CsvRecord(line, None, f"is not valid UTF-8 (byte 0x{byte:02x}); save the file as UTF-8")
    if size * 4 > (limit or 1 << 62):
        size = sum(len(v.encode("utf-8")) for v in row.values())
    problem = rowcheck.size_problem(size, limit)
    if problem:
        return CsvRecord(line, None, problem.message)
    return CsvRecord(line, row)


def _csv_problem(exc: csv.Error) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return (f"invalid CSV: a cell is longer than the csv module's limit ({csv.field_size_limit()} characters); "
                "store rows this long as JSONL or Parquet")
    if "NUL" in text:
        return "invalid CSV: the line contains a NUL byte"
    if "expected after" in text or "unexpected end of data" in text:
        return f"invalid CSV: {text} (an unbalanced quote? only this line was skipped)"
    return f"invalid CSV: {text}"
