"""Read raw rows, with their location, from local files and folders.

JSONL (line), JSON arrays (row + line, decoded element by element), CSV (row + line), Parquet
(row), ``.txt`` (line / paragraph / file per ``text_unit``), folders of those (sorted,
recursive). A bad row (invalid JSON or CSV, invalid UTF-8 bytes, a truncated end, a duplicate
key, deep nesting, a lone surrogate, a row over ``max_row_bytes``) comes back as a
:class:`RawRow` with ``error`` set and never takes the rows after it with it: every bad row is
reported, every good one is read.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tunesmith.config.schema import DatasetSpec
from tunesmith.data import csv_rows, json_stream, rowcheck
from tunesmith.data.rowcheck import RowProblem
from tunesmith.errors import DataError, RowError, TunesmithError

_BOM = b"\xef\xbb\xbf"
_PREVIEW = 200  # characters of a bad row kept for rejected_rows.jsonl


@dataclass(slots=True)
class RawRow:
    """One raw row: a dict (or other JSON value) with its location, or an ``error`` message
    (``field`` names where in the row, when known)."""

    source: str
    row: int | None
    line: int | None
    data: Any
    error: str | None = None
    field: str | None = None


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
    try:
        streamed = reader in (read_parquet, read_jsonl, read_json, read_csv)  # those read the file as they go
        data = path.read_bytes() if not streamed else b""
        if streamed:
            with path.open("rb") as fh:  # unreadable: said here, like the others
                head = fh.read(4)
        else:
            head = data[:4]
    except OSError as exc:
        yield RawRow(str(path), None, None, None, f"cannot be read ({exc.strerror or exc})")
        return
    wide = _wide_encoding(head) if reader is not read_parquet else None
    if wide:  # read as UTF-8 it would be one error per line, or rows of mojibake
        raise DataSourceError(str(path), f"is {wide} text, not UTF-8; save it as UTF-8 (e.g. iconv -f {wide.split()[0]} "
                              "-t UTF-8)")
    for raw in reader(path, data, spec):
        count += 1
        yield raw
    if count == 0:
        yield RawRow(str(path), None, None, None, "file is empty (no rows)")


# byte order marks of encodings a text reader would misread as UTF-8 (UTF-32 first: its LE mark starts like UTF-16's)
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32LE"), (codecs.BOM_UTF32_BE, "UTF-32BE"),
              (codecs.BOM_UTF16_LE, "UTF-16LE"), (codecs.BOM_UTF16_BE, "UTF-16BE"))


def _wide_encoding(head: bytes) -> str | None:
    """``UTF-16LE (byte order mark FF FE)`` when a text file's first bytes are UTF-16/32 -- a byte order
    mark, or an ASCII character next to a NUL byte, which no UTF-8 text file starts with -- else None."""
    for bom, name in _WIDE_BOMS:
        if head.startswith(bom):
            return f"{name} (byte order mark {bom.hex(' ').upper()})"
    if len(head) >= 2 and (head[0] == 0) != (head[1] == 0):
        return "UTF-16BE" if head[0] == 0 else "UTF-16LE"
    return None


def _lossless(data: bytes) -> str:
    """The file's text; invalid bytes survive as surrogates (rowcheck.bad_byte finds them per row)."""
    return data[len(_BOM):].decode("utf-8", "surrogateescape") if data.startswith(_BOM) else data.decode(
        "utf-8", "surrogateescape")


def _short(value: str) -> str:
    return value if len(value) <= _PREVIEW else value[:_PREVIEW] + "..."


def _utf8_problem(byte: int, column: int) -> str:
    return f"is not valid UTF-8 (byte 0x{byte:02x} at column {column}); save the file as UTF-8"


def _json_problem(exc: json.JSONDecodeError, at_end: bool) -> str:
    problem = f"invalid JSON: {exc.msg} (column {exc.colno})"
    return problem + (" (the file ends here: was it truncated?)" if at_end else "")


def _jsonl_rows(lines: Iterable[bytes], source: str, limit: int) -> Iterator[RawRow]:
    """Rows of JSON lines (each with its newline, the last one maybe without), read as they come."""
    row = 0
    for lineno, raw in enumerate(lines, 1):
        last = not raw.endswith(b"\n")  # a last line without newline may be cut off
        raw = raw.rstrip(b"\n")
        if not raw.strip():
            continue
        row += 1
        if lineno == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM):]
        yield _jsonl_row(raw, source, row, lineno, limit, last)


def _jsonl_row(raw: bytes, source: str, row: int, lineno: int, limit: int, last: bool) -> RawRow:
    too_big = rowcheck.size_problem(len(raw), limit)
    if too_big:
        return RawRow(source, row, lineno, _short(raw.decode("utf-8", "backslashreplace")), too_big.message)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw.decode("utf-8", "backslashreplace")
        return RawRow(source, row, lineno, _short(bad), _utf8_problem(raw[exc.start], exc.start + 1))
    try:
        return RawRow(source, row, lineno, rowcheck.loads(text))
    except json.JSONDecodeError as exc:
        return RawRow(source, row, lineno, _short(text), _json_problem(exc, last))
    except RowProblem as exc:
        return RawRow(source, row, lineno, _short(text), exc.message, exc.field)


def read_jsonl(path: Path, data: bytes, spec: DatasetSpec) -> Iterator[RawRow]:
    """Rows of a JSON-lines file, streamed line by line (``data`` unused: the file is not read whole). A file
    whose first line is a lone ``{`` or ``[`` holds pretty-printed JSON (no JSON line can be that): it is read
    as JSON, instead of one 'invalid JSON' per line."""
    if _pretty_printed(path):
        yield from read_json(path, data, spec)
        return
    with path.open("rb") as fh:
        yield from _jsonl_rows(fh, str(path), spec.max_row_bytes)


def _pretty_printed(path: Path) -> bool:
    with path.open("rb") as fh:
        for raw in fh:
            line = raw.strip().removeprefix(_BOM).strip()
            if line:
                return line in (b"{", b"[")
    return False


def read_json(path: Path, data: bytes, spec: DatasetSpec) -> Iterator[RawRow]:
    """A JSON array of rows (read element by element); or one object; or JSON values one after
    another (JSON Lines saved as ``.json``)."""
    source = str(path)
    with path.open("rb") as fh:
        for piece in json_stream.stream_text(_text_pieces(fh), spec.max_row_bytes):
            yield RawRow(source, piece.row, piece.line, piece.raw if piece.problem else piece.value, piece.problem,
                         piece.field)


def read_csv(path: Path, data: bytes, spec: DatasetSpec) -> Iterator[RawRow]:
    """Rows of a CSV file with a header; cells are strings (JSON cells are parsed by the formats)."""
    source = str(path)
    row = 0
    with path.open("rb") as fh:
        for record in csv_rows.records(_text_lines_of(fh), spec.max_row_bytes):
            row += 1
            yield RawRow(source, row, record.line, record.values, record.problem)


def _text_lines_of(fh: BinaryIO) -> Iterator[str]:
    """The file's lines as :func:`_lossless` text (BOM dropped, invalid bytes kept as surrogates),
    each with its newline, read as they come (a UTF-8 sequence never holds a newline byte)."""
    for k, raw in enumerate(fh):
        if k == 0 and raw.startswith(_BOM):
            raw = raw[len(_BOM):]
        if raw:
            yield raw.decode("utf-8", "surrogateescape")


def _text_pieces(fh: BinaryIO) -> Iterator[str]:
    """The file's text as :func:`_lossless` gives it, in pieces of about ``json_stream.CHUNK`` characters."""
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    head = fh.read(len(_BOM))
    if head != _BOM:
        yield decoder.decode(head)
    while block := fh.read(json_stream.CHUNK):
        yield decoder.decode(block)
    yield decoder.decode(b"", final=True)


def read_parquet(path: Path, data: bytes, spec: DatasetSpec) -> Iterator[RawRow]:
    """Rows of a Parquet file, row group by row group (an unreadable group is reported, the rest read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = str(path)
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        yield RawRow(source, None, None, None, f"is not a readable Parquet file ({exc})")
        return
    row = 0
    for group in range(parquet.num_row_groups):
        size = parquet.metadata.row_group(group).num_rows
        try:
            table = parquet.read_row_group(group)
        except (pa.ArrowException, OSError, ValueError) as exc:
            yield RawRow(source, row + 1, None, None, f"rows {row + 1}-{row + size} (row group {group}) "
                         f"cannot be read: {' '.join(str(exc).split())[:200]}")
            row += size
            continue
        for value in _parquet_values(table):
            row += 1
            if isinstance(value, UnicodeDecodeError):
                yield RawRow(source, row, None, None, _utf8_problem(value.object[value.start], value.start + 1)
                             .replace("at column", "at character"))
            elif isinstance(value, Exception):
                yield RawRow(source, row, None, None, f"cannot be read: {' '.join(str(value).split())[:200]}")
            else:
                yield _parquet_row(source, row, value, spec.max_row_bytes)


def _parquet_values(table: Any) -> Iterator[Any]:
    """The rows of a row group; when one can't be converted (invalid UTF-8 in a string column),
    row by row, so only that row is lost (yielded as its exception)."""
    try:
        yield from table.to_pylist()
        return
    except (ValueError, TypeError):
        pass
    for i in range(table.num_rows):
        try:
            yield table.slice(i, 1).to_pylist()[0]
        except (ValueError, TypeError) as exc:
            yield exc


def _parquet_row(source: str, row: int, value: Any, limit: int) -> RawRow:
    try:
        too_big = rowcheck.size_problem(rowcheck.check_value(value), limit)
        if too_big:
            raise too_big
    except RowProblem as exc:
        return RawRow(source, row, None, _short(repr(value)), exc.message, exc.field)
    return RawRow(source, row, None, value)


def read_txt(path: Path, data: bytes, spec: DatasetSpec) -> Iterator[RawRow]:
    """Plain text: one document per non-blank line, per blank-line-separated paragraph, or per file."""
    source, key, limit = str(path), spec.field_text or "text", spec.max_row_bytes
    if spec.text_unit == "line":
        for raw in _text_lines(data, source, limit):
            yield raw if raw.error else RawRow(source, raw.row, raw.line, {key: raw.data})
        return
    text = _lossless(data)
    if spec.text_unit == "file":
        if text.strip():
            yield _text_block(source, 1, 1, text, key, limit)
        return
    row, start, block = 0, 0, []
    for lineno, line in enumerate([*text.split("\n"), ""], 1):
        if line.strip():
            start = start or lineno
            block.append(line.rstrip("\r"))
        elif block:
            row += 1
            yield _text_block(source, row, start, "\n".join(block), key, limit)
            start, block = 0, []


def _text_block(source: str, row: int, line: int, text: str, key: str, limit: int) -> RawRow:
    """A paragraph or file as a row; an invalid byte or excess size rejects only this block."""
    bad = rowcheck.bad_byte(text)
    if bad is not None:
        at = line + text.count("\n", 0, bad)
        column = bad - (text.rfind("\n", 0, bad) + 1) + 1
        byte = rowcheck.byte_of(text[bad])
        return RawRow(source, row, line, _short(text), f"is not valid UTF-8 (byte 0x{byte:02x} at line {at}, "
                      f"column {column}); save the file as UTF-8")
    size = len(text) if len(text) * 4 <= (limit or 1 << 62) else len(text.encode("utf-8"))
    too_big = rowcheck.size_problem(size, limit)
    if too_big:
        return RawRow(source, row, line, _short(text), too_big.message)
    return RawRow(source, row, line, {key: text})


def _text_lines(data: bytes, source: str, limit: int) -> Iterator[RawRow]:
    """Non-blank lines as strings, each decoded separately (a bad byte spoils one line only)."""
    row = 0
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        row += 1
        raw = raw[len(_BOM):] if lineno == 1 and raw.startswith(_BOM) else raw
        too_big = rowcheck.size_problem(len(raw), limit)
        if too_big:
            yield RawRow(source, row, lineno, _short(raw.decode("utf-8", "backslashreplace")), too_big.message)
            continue
        try:
            yield RawRow(source, row, lineno, raw.rstrip(b"\r").decode("utf-8"))
        except UnicodeDecodeError as exc:
            bad = raw.decode("utf-8", "backslashreplace")
            yield RawRow(source, row, lineno, _short(bad), _utf8_problem(raw[exc.start], exc.start + 1))


READERS: dict[str, Callable[[Path, bytes, DatasetSpec], Iterator[RawRow]]] = {
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
