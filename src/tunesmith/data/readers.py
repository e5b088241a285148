"""Read raw rows, with their location, from local files and folders.

JSONL (line), JSON arrays (row + line), CSV (row + line), Parquet (row), ``.txt``
(line / paragraph / file per ``text_unit``), folders of those (sorted, recursive).
Unreadable rows (invalid JSON, non-UTF-8 bytes, a truncated last line) come back as
:class:`RawRow` with ``error`` set, so every bad row is reported, not just the first.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config.schema import DatasetSpec
from tunesmith.errors import DataError, RowError, TunesmithError

_BOM = b"\xef\xbb\xbf"
_WS = re.compile(r"[ \t\n\r]*")


@dataclass(slots=True)
class RawRow:
    """One raw row: a dict (or other JSON value) with its location, or an ``error`` message."""

    source: str
    row: int | None
    line: int | None
    data: Any
    error: str | None = None


class DataSourceError(DataError):
    """A whole input is unusable (missing path, unknown layout, hub unreachable)."""

    def __init__(self, source: str, message: str):
        self.errors = [RowError(source, None, None, message)]
        self.total_rows = None
        TunesmithError.__init__(self, f"{source}: {message}")


def read_file(path: Path, spec: DatasetSpec) -> Iterator[RawRow]:
    """Rows of one file; an empty file yields one error row."""
    reader = READERS[path.suffix.lower()]
    count = 0
    for raw in reader(path, spec):
        count += 1
        yield raw
    if count == 0:
        yield RawRow(str(path), None, None, None, "file is empty (no rows)")


def _decode(data: bytes, source: str) -> str | RawRow:
    """The file's text, or an error row at the first invalid byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return RawRow(source, None, line, None, _utf8_problem(data[exc.start], column))


def _utf8_problem(byte: int, column: int) -> str:
    return f"is not valid UTF-8 (byte 0x{byte:02x} at column {column}); save the file as UTF-8"


def _json_problem(exc: json.JSONDecodeError, at_end: bool) -> str:
    problem = f"invalid JSON: {exc.msg} (column {exc.colno})"
    return problem + (" (the file ends here: was it truncated?)" if at_end else "")


def _jsonl_rows(data: bytes, source: str) -> Iterator[RawRow]:
    lines = data.split(b"\n")
    last = len(lines) if lines[-1].strip() else 0  # a last line without newline may be cut off
    row = 0
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        row += 1
        if lineno == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM):]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = raw.decode("utf-8", "backslashreplace")
            yield RawRow(source, row, lineno, bad, _utf8_problem(raw[exc.start], exc.start + 1))
            continue
        try:
            yield RawRow(source, row, lineno, json.loads(text))
        except json.JSONDecodeError as exc:
            yield RawRow(source, row, lineno, text, _json_problem(exc, lineno == last))


def read_jsonl(path: Path, spec: DatasetSpec) -> Iterator[RawRow]:
    return _jsonl_rows(path.read_bytes(), str(path))


def read_json(path: Path, spec: DatasetSpec) -> Iterator[RawRow]:
    """A JSON array of rows; a single object; or JSON Lines saved as ``.json``."""
    source = str(path)
    data = path.read_bytes()
    text = _decode(data, source)
    if isinstance(text, RawRow):
        yield text
        return
    start = _skip_ws(text, 0)
    if start == len(text):
        return
    if text[start] == "[":
        yield from _json_array(text, start + 1, source)
        return
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        yield from _jsonl_rows(data, source)
        return
    if not isinstance(whole, dict):
        yield RawRow(source, None, 1, whole, "must hold a list of rows ([{...}, ...]) or one JSON object per line")
        return
    yield RawRow(source, 1, text.count("\n", 0, start) + 1, whole)


def _skip_ws(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    return match.end() if match else pos


def _json_array(text: str, pos: int, source: str) -> Iterator[RawRow]:
    """Rows of a top-level JSON array, each with the line where it starts."""
    decoder = json.JSONDecoder()
    cut_off = not text.rstrip().endswith("]")
    row, line, seen = 0, 1, 0
    while True:
        pos = _skip_ws(text, pos)
        if pos >= len(text):
            problem = "invalid JSON: the file ends before the closing ']' (was it truncated?)"
            yield RawRow(source, None, line, None, problem)
            return
        if text[pos] == "]" and row == 0:
            break
        line += text.count("\n", seen, pos)
        seen = pos
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            problem = _json_problem(exc, cut_off)
            yield RawRow(source, row + 1, exc.lineno, None, problem + "; rows after it were not read")
            return
        row += 1
        yield RawRow(source, row, line, value)
        pos = _skip_ws(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos < len(text) and text[pos] == "]":
            break
        else:
            at = text.count("\n", 0, pos) + 1
            problem = f"invalid JSON: expected ',' or ']' after row {row}"
            yield RawRow(source, None, at, None, problem + (" (was the file truncated?)" if cut_off else ""))
            return
    if text[pos + 1:].strip():
        yield RawRow(source, None, text.count("\n", 0, pos) + 1, None, "invalid JSON: extra data after the closing ']'")


def read_csv(path: Path, spec: DatasetSpec) -> Iterator[RawRow]:
    """Rows of a CSV file with a header; cells are strings (JSON cells are parsed by the formats)."""
    source = str(path)
    text = _decode(path.read_bytes(), source)
    if isinstance(text, RawRow):
        yield text
        return
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        return
    row = 0
    while True:
        line = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RawRow(source, row + 1, line, None, f"invalid CSV: {exc}")
            return
        if not any(v.strip() for v in values):
            continue
        row += 1
        if len(values) != len(header):
            problem = f"has {len(values)} fields but the header has {len(header)}"
            yield RawRow(source, row, line, values, problem)
            continue
        yield RawRow(source, row, line, dict(zip(header, values, strict=True)))


def read_parquet(path: Path, spec: DatasetSpec) -> Iterator[RawRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = str(path)
    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=4096)
    except (pa.ArrowException, OSError) as exc:
        yield RawRow(source, None, None, None, f"is not a readable Parquet file ({exc})")
        return
    row = 0
    for batch in batches:
        for value in batch.to_pylist():
            row += 1
            yield RawRow(source, row, None, value)


def read_txt(path: Path, spec: DatasetSpec) -> Iterator[RawRow]:
    """Plain text: one document per non-blank line, per blank-line-separated paragraph, or per file."""
    source, key = str(path), spec.field_text or "text"
    data = path.read_bytes()
    if spec.text_unit == "line":
        for raw in _text_lines(data, source):
            yield raw if raw.error else RawRow(source, raw.row, raw.line, {key: raw.data})
        return
    text = _decode(data, source)
    if isinstance(text, RawRow):
        yield text
        return
    if spec.text_unit == "file":
        if text.strip():
            yield RawRow(source, 1, 1, {key: text})
        return
    row, start, block = 0, 0, []
    for lineno, line in enumerate([*text.split("\n"), ""], 1):
        if line.strip():
            start = start or lineno
            block.append(line.rstrip("\r"))
        elif block:
            row += 1
            yield RawRow(source, row, start, {key: "\n".join(block)})
            start, block = 0, []


def _text_lines(data: bytes, source: str) -> Iterator[RawRow]:
    """Non-blank lines as strings, each decoded separately (a bad byte spoils one line only)."""
    row = 0
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        row += 1
        raw = raw[len(_BOM):] if lineno == 1 and raw.startswith(_BOM) else raw
        try:
            yield RawRow(source, row, lineno, raw.rstrip(b"\r").decode("utf-8"))
        except UnicodeDecodeError as exc:
            bad = raw.decode("utf-8", "backslashreplace")
            yield RawRow(source, row, lineno, bad, _utf8_problem(raw[exc.start], exc.start + 1))


READERS: dict[str, Callable[[Path, DatasetSpec], Iterator[RawRow]]] = {
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".json": read_json,
    ".csv": read_csv,
    ".parquet": read_parquet,
    ".txt": read_txt,
}


def folder_files(folder: Path, patterns: list[str] | None) -> list[Path]:
    """Supported files under ``folder`` (recursive, sorted, hidden ones skipped), or ``data_files`` globs."""
    if patterns:
        found: set[Path] = set()
        for pattern in patterns:
            matches = [p for p in folder.glob(pattern) if p.is_file()]
            if not matches:
                raise DataSourceError(str(folder), f"data_files: '{pattern}' matches no file")
            found.update(matches)
        return sorted(found)
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in READERS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def digest_files(files: list[Path]) -> str:
    """sha256 over the files' names and bytes."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
