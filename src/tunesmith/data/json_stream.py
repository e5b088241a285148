"""Rows of a JSON array (or of JSON values written one after another), element by element.

Each element is decoded on its own, so a bad one (invalid JSON, an invalid byte, a missing
comma, deep nesting, a cut-off end) becomes one error row with its line and every later row is
still read. After a bad element the parser resynchronises at the next element start: the end
of the element's brackets when they balance, else the next line that starts at the elements'
indentation and holds a valid value.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tunesmith.data import rowcheck
from tunesmith.data.rowcheck import RowProblem

_WS = re.compile(r"[ \t\n\r]*")
_CLOSER = {"{": "}", "[": "]"}
_STRUCTURE = re.compile(r'[{}\[\]"]')
_STRING_BODY = re.compile(r'(?:[^"\\\n]|\\.)*')


@dataclass(slots=True)
class Piece:
    """One element: its value, or the problem that made it unusable, with its location."""

    row: int | None
    line: int
    value: Any = None
    problem: str | None = None
    field: str | None = None
    raw: str | None = None


class Lines:
    """Line and column of an offset (1-based), by bisection over the newline offsets."""

    def __init__(self, text: str):
        self.newlines = [m.start() for m in re.finditer("\n", text)]

    def line(self, pos: int) -> int:
        return bisect.bisect_left(self.newlines, pos) + 1

    def column(self, pos: int) -> int:
        k = bisect.bisect_left(self.newlines, pos)
        return pos - (self.newlines[k - 1] + 1 if k else 0) + 1

    def starts_after(self, pos: int) -> Iterator[int]:
        """Offsets where the lines after the one holding ``pos`` begin."""
        for k in range(bisect.bisect_left(self.newlines, pos), len(self.newlines)):
            yield self.newlines[k] + 1


def skip_ws(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    return match.end() if match else pos


def stream(text: str, pos: int, limit: int, array: bool) -> Iterator[Piece]:
    """Elements from ``pos`` (just after the ``[`` when ``array``; else values one after another)."""
    lines = Lines(text)
    state = _State(text, lines, limit, array)
    yield from state.run(pos)


class _State:
    def __init__(self, text: str, lines: Lines, limit: int, array: bool):
        self.text, self.lines, self.limit, self.array = text, lines, limit, array
        self.row = 0
        self.indent: int | None = None  # column at which elements start their line
        self.exhausted = False  # a bad element ran to the end of the file (already reported)
        self.keys: frozenset[str] | None = None  # keys of the last good object row

    def run(self, pos: int) -> Iterator[Piece]:
        text, n = self.text, len(self.text)
        separated = True  # a value may start here without a ',' before it
        while True:
            pos = skip_ws(text, pos)
            if pos >= n:
                if self.array and not self.exhausted:
                    yield Piece(None, self.lines.line(pos), problem="invalid JSON: the file ends before the "
                                "closing ']' (was it truncated?)")
                return
            char = text[pos]
            if self.array and char == "]":
                yield from self._after_array(pos + 1)
                return
            if char == ",":
                if separated and self.array:
                    yield Piece(None, self.lines.line(pos), problem="invalid JSON: a ',' with no row before it")
                pos, separated = pos + 1, True
                continue
            if not separated and self.array:
                yield Piece(None, self.lines.line(pos), problem="invalid JSON: missing ',' between rows "
                            "(before this row)")
            pos, separated = yield from self._element(pos)

    def _element(self, start: int) -> Iterator[Piece]:
        """Decode one element at ``start``; returns (next position, whether it is already separated)."""
        self.row += 1
        line = self.lines.line(start)
        try:
            value, end = rowcheck.decode(self.text, start)
        except json.JSONDecodeError as exc:
            end, at_next = self._resync(start, exc.pos)
            self.exhausted = end >= len(self.text)
            yield self._bad(start, end, line, self._json_problem(exc, start, end))
            return end, at_next
        except RowProblem as exc:  # duplicate key or deep nesting: the element's extent is still JSON
            end = self._extent(start)
            yield self._bad(start, end, line, exc.message)
            return end, False
        self._learn_indent(start)
        if isinstance(value, dict):
            self.keys = frozenset(value)
        yield self._checked(start, end, line, value)
        return end, False

    def _checked(self, start: int, end: int, line: int, value: Any) -> Piece:
        span = self.text[start:end]
        bad = rowcheck.bad_byte(span)
        if bad is not None:
            return self._bad(start, end, line, self._utf8_problem(start + bad))
        size = len(span) if len(span) * 4 <= (self.limit or 1 << 62) else len(span.encode("utf-8", "surrogatepass"))
        try:
            problem = rowcheck.size_problem(size, self.limit)
            if problem:
                raise problem
            rowcheck.check_value(value, span)
        except RowProblem as exc:
            return Piece(self.row, line, problem=exc.message, field=exc.field, raw=_short(span))
        return Piece(self.row, line, value=value)

    def _bad(self, start: int, end: int, line: int, problem: str) -> Piece:
        span = self.text[start:end]
        bad = rowcheck.bad_byte(span)
        if bad is not None:
            problem = self._utf8_problem(start + bad)
        return Piece(self.row, line, problem=problem, raw=_short(span))

    def _utf8_problem(self, pos: int) -> str:
        byte = rowcheck.byte_of(self.text[pos])
        return (f"is not valid UTF-8 (byte 0x{byte:02x} at line {self.lines.line(pos)}, column "
                f"{self.lines.column(pos)}); save the file as UTF-8")

    def _json_problem(self, exc: json.JSONDecodeError, start: int, end: int) -> str:
        where = f"column {exc.colno}" if exc.lineno == self.lines.line(start) else f"line {exc.lineno}, column {exc.colno}"
        text = f"invalid JSON: {exc.msg} ({where})"
        if end >= len(self.text) and not self.text.rstrip().endswith(("]", "}")):
            text += " (the file ends inside this row: was it truncated?)"
        elif end >= len(self.text):
            text += "; no later row could be read"
        return text

    def _learn_indent(self, start: int) -> None:
        line_start = self.text.rfind("\n", 0, start) + 1
        if not self.text[line_start:start].strip():
            self.indent = start - line_start

    def _resync(self, start: int, error: int) -> tuple[int, bool]:
        """Where the bad element at ``start`` ends: the end of its brackets (False), or the start of
        the next element (True; ``len(text)`` when there is none)."""
        end = self._balanced_end(start)
        if end is not None and end >= error and self._separator_after(end):
            return end, False
        return self._next_line_element(start, error), True

    def _extent(self, start: int) -> int:
        """End of a syntactically valid element that failed a check (plain decode, else brackets)."""
        try:
            return rowcheck.PLAIN_DECODER.raw_decode(self.text, start)[1]
        except (json.JSONDecodeError, RecursionError):
            end = self._balanced_end(start)
            return end if end is not None else self._next_line_element(start, start)

    def _balanced_end(self, start: int) -> int | None:
        """End of the brackets opened at ``start`` (strings end at a newline: JSON strings can't hold one)."""
        text = self.text
        if text[start] not in _CLOSER:
            return None
        stack: list[str] = []
        pos = start
        while True:
            match = _STRUCTURE.search(text, pos)
            if match is None:
                return None
            pos, char = match.start(), match.group()
            if char == '"':
                pos = _string_end(text, pos + 1)
                continue
            if char in _CLOSER:
                stack.append(_CLOSER[char])
            elif not stack or stack.pop() != char:
                return None
            elif not stack:
                return pos + 1
            pos += 1

    def _separator_after(self, end: int) -> bool:
        """What follows a value can follow an element: ',', ']', the end, or (a missing comma) a value."""
        pos = skip_ws(self.text, end)
        return pos >= len(self.text) or self.text[pos] in ",]{["

    def _next_line_element(self, start: int, error: int) -> int:
        """The first later line that starts the next element: at the indentation the good elements
        start at, or (none learned yet) at most as indented as this one and holding a whole value."""
        text = self.text
        first = text.rfind("\n", 0, max(error, start + 1)) + 1  # the line holding the error may start one
        after_comma = re.compile(r"[ \t]*,?[ \t]*")
        start_col = start - (text.rfind("\n", 0, start) + 1)
        candidates = [first] if first > start else []
        for line_start in [*candidates, *self.lines.starts_after(max(error, start + 1))]:
            pos = after_comma.match(text, line_start).end()  # type: ignore[union-attr]
            if pos >= len(text) or text[pos] != text[start] or self.lines.line(pos) != self.lines.line(line_start):
                continue
            column = pos - line_start
            if self.indent is not None:  # pretty-printed: a line at the rows' indentation starts the next row
                if column == self.indent:
                    return pos
                continue
            if column > start_col:
                continue
            try:
                end: int | None = rowcheck.PLAIN_DECODER.raw_decode(text, pos)[1]
            except json.JSONDecodeError:
                continue
            except RecursionError:  # too deep to decode, but a whole value: the next row (reported as such)
                end = self._balanced_end(pos)
            if end is not None and self._separator_after(end):
                return pos
        return self._same_keys_element(start, error)

    def _same_keys_element(self, start: int, error: int, tries: int = 200) -> int:
        """Last resort (rows not on lines of their own): the next ``,{`` that opens an object with
        the same keys as the last good row."""
        if self.keys is None or self.text[start] != "{":
            return len(self.text)
        for match in re.finditer(r",\s*\{", self.text[max(error, start + 1):]):
            pos = max(error, start + 1) + match.end() - 1
            try:
                value, end = rowcheck.PLAIN_DECODER.raw_decode(self.text, pos)
            except (json.JSONDecodeError, RecursionError):
                value, end = None, pos
            if isinstance(value, dict) and frozenset(value) == self.keys and self._separator_after(end):
                return pos
            tries -= 1
            if not tries:
                break
        return len(self.text)

    def _after_array(self, pos: int) -> Iterator[Piece]:
        """After the closing ']': nothing, or another array (its rows are read too), or an error."""
        pos = skip_ws(self.text, pos)
        if pos >= len(self.text):
            return
        line = self.lines.line(pos)
        if self.text[pos] == "[":
            yield Piece(None, line, problem="invalid JSON: a second top-level array starts here (its rows are "
                        "read too; join the arrays)")
            yield from self.run(pos + 1)
            return
        yield Piece(None, line, problem="invalid JSON: extra data after the closing ']'", raw=_short(self.text[pos:]))


def _string_end(text: str, pos: int) -> int:
    """Offset just after the string whose body starts at ``pos`` (or of the newline that cuts it)."""
    end = _STRING_BODY.match(text, pos).end()  # type: ignore[union-attr]
    return end + 1 if end < len(text) and text[end] == '"' else end


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
