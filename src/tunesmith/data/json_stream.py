"""Rows of a JSON array (or of JSON values written one after another), element by element.

Each element is decoded on its own, so a bad one (invalid JSON, an invalid byte, a missing
comma, deep nesting, a cut-off end) becomes one error row with its line and every later row is
still read. After a bad element the parser resynchronises at the next element start: the end
of the element's brackets when they balance, else the next line that starts at the elements'
indentation and holds a valid value.

The file's text is read through a sliding buffer (:class:`Text`, issue 20): an element is decoded
in place, the buffer refilled when it runs past the end, and what lies before the current element
dropped, so a JSON array larger than memory streams like JSONL. Lines and columns stay exact (the
buffer counts the newlines it drops). A bad element makes the parser read ahead to the end of the
file, as it always could, so resynchronisation finds exactly what it finds in the whole text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
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


CHUNK = 1 << 20  # characters (bytes, for the file reader) read per refill
_AHEAD = 1 << 16  # characters read past an element's start before it is decoded
_PREVIEW = 201  # characters after an extra-data position kept for its preview


class Text:
    """The text from offset ``base`` on, in ``buf``, read from ``pieces`` as asked for; it converts
    positions in ``buf`` to the whole text's line and column (1-based)."""

    def __init__(self, pieces: Iterable[str]):
        self.pieces = iter(pieces)
        self.buf = ""
        self.base = 0
        self.eof = False
        self.newlines_before = 0  # newlines in the text dropped so far
        self.line_start = 0  # offset (in the whole text) of the line holding `base`
        self.blank_before = True  # that line's dropped part is only whitespace
        self._at = self._count = 0  # newlines in buf[:_at]: positions are asked for mostly in order

    def more(self, size: int) -> bool:
        """Read until ``buf`` holds ``size`` characters or the text ends; whether it grew."""
        parts, have = [self.buf], len(self.buf)
        while have < size and not self.eof:
            piece = next(self.pieces, None)
            if piece is None:
                self.eof = True
                break
            parts.append(piece)
            have += len(piece)
        if len(parts) > 1:
            self.buf = "".join(parts)
        return have > len(parts[0])

    def drop(self, cut: int) -> None:
        """Forget ``buf[:cut]`` (positions after it move down by ``cut``)."""
        dropped = self.buf[:cut]
        k = dropped.rfind("\n")
        self.newlines_before += dropped.count("\n")
        if k >= 0:
            self.line_start, self.blank_before = self.base + k + 1, not dropped[k + 1:].strip()
        else:
            self.blank_before = self.blank_before and not dropped.strip()
        self.buf, self.base = self.buf[cut:], self.base + cut
        self._at = self._count = 0

    def line(self, pos: int) -> int:
        pos = min(pos, len(self.buf))
        if pos < self._at:
            self._count -= self.buf.count("\n", pos, self._at)
        else:
            self._count += self.buf.count("\n", self._at, pos)
        self._at = pos
        return self.newlines_before + self._count + 1

    def column(self, pos: int) -> int:
        k = self.buf.rfind("\n", 0, pos)
        return pos - k if k >= 0 else self.base + pos - self.line_start + 1

    def blank_until(self, pos: int) -> bool:
        """Whether the line holding ``pos`` has only whitespace before it."""
        k = self.buf.rfind("\n", 0, pos)
        if k >= 0:
            return not self.buf[k + 1 : pos].strip()
        return self.blank_before and not self.buf[:pos].strip()

    def starts_after(self, pos: int) -> Iterator[int]:
        """Positions where the lines after the one holding ``pos`` begin (in what is read so far)."""
        k = self.buf.find("\n", pos)
        while k >= 0:
            yield k + 1
            k = self.buf.find("\n", k + 1)


def skip_ws(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    return match.end() if match else pos


def stream(text: str, pos: int, limit: int, array: bool) -> Iterator[Piece]:
    """Elements of the whole ``text`` from ``pos`` (just after the ``[`` when ``array``; else values
    one after another)."""
    yield from _State(Text([text]), limit, array).run(pos)


def stream_text(pieces: Iterable[str], limit: int) -> Iterator[Piece]:
    """Elements of the text ``pieces`` make, read as they come: a JSON array's elements, or JSON
    values one after another (nothing for an empty or blank text)."""
    state = _State(Text(pieces), limit, False)
    start = state.skip(0)
    if start >= len(state.text):
        return
    state.array = state.text[start] == "["
    yield from state.run(start + 1 if state.array else start)


class _State:
    def __init__(self, src: Text, limit: int, array: bool):
        self.src, self.limit, self.array = src, limit, array  # src: the text, and its lines and columns
        self.row = 0
        self.indent: int | None = None  # column at which elements start their line
        self.exhausted = False  # a bad element ran to the end of the file (already reported)
        self.keys: frozenset[str] | None = None  # keys of the last good object row

    @property
    def text(self) -> str:
        return self.src.buf

    def skip(self, pos: int) -> int:
        """``pos`` moved past whitespace, reading on as needed (``len(text)`` at the end)."""
        while True:
            if pos < len(self.src.buf):
                pos = skip_ws(self.src.buf, pos)
            if pos < len(self.src.buf) or not self.src.more(pos + CHUNK):
                return pos

    def _slide(self, pos: int) -> int:
        """Drop what lies before ``pos`` once it is more than ``CHUNK`` characters and half of what is
        held (each character is moved a bounded number of times); ``pos`` after."""
        if pos <= CHUNK or 2 * pos < len(self.src.buf):
            return pos
        self.src.drop(pos)
        return 0

    def _decode(self, start: int) -> tuple[Any, int]:
        """``rowcheck.decode`` at ``start``, reading on while the element may run past what is read
        (a failure before the end of the text is retried with more; a bad element thus sees it all)."""
        self.src.more(start + _AHEAD)
        while True:
            try:
                value, end = rowcheck.decode(self.text, start)
                if end < len(self.text) or self.src.eof:
                    return value, end
            except (json.JSONDecodeError, RowProblem):
                if self.src.eof:
                    raise
            self.src.more(start + max(2 * (len(self.text) - start), CHUNK))

    def run(self, pos: int) -> Iterator[Piece]:
        separated = True  # a value may start here without a ',' before it
        while True:
            pos = self.skip(self._slide(pos))
            text = self.text
            if pos >= len(text):
                if self.array and not self.exhausted:
                    yield Piece(None, self.src.line(pos), problem="invalid JSON: the file ends before the "
                                "closing ']' (was it truncated?)")
                return
            char = text[pos]
            if self.array and char == "]":
                yield from self._after_array(pos + 1)
                return
            if char == ",":
                if separated and self.array:
                    yield Piece(None, self.src.line(pos), problem="invalid JSON: a ',' with no row before it")
                pos, separated = pos + 1, True
                continue
            if not separated and self.array:
                yield Piece(None, self.src.line(pos), problem="invalid JSON: missing ',' between rows "
                            "(before this row)")
            pos, separated = yield from self._element(pos)

    def _element(self, start: int) -> Iterator[Piece]:
        """Decode one element at ``start``; returns (next position, whether it is already separated)."""
        self.row += 1
        line = self.src.line(start)
        try:
            value, end = self._decode(start)
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
        return (f"is not valid UTF-8 (byte 0x{byte:02x} at line {self.src.line(pos)}, column "
                f"{self.src.column(pos)}); save the file as UTF-8")

    def _json_problem(self, exc: json.JSONDecodeError, start: int, end: int) -> str:
        lineno, colno = self.src.line(exc.pos), self.src.column(exc.pos)  # in the whole text
        where = f"column {colno}" if lineno == self.src.line(start) else f"line {lineno}, column {colno}"
        text = f"invalid JSON: {exc.msg} ({where})"
        if end >= len(self.text) and not self.text.rstrip().endswith(("]", "}")):
            text += " (the file ends inside this row: was it truncated?)"
        elif end >= len(self.text):
            text += "; no later row could be read"
        return text

    def _learn_indent(self, start: int) -> None:
        if self.src.blank_until(start):
            self.indent = self.src.column(start) - 1

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
        start_col = self.src.column(start) - 1
        candidates = [first] if first > start else []
        for line_start in [*candidates, *self.src.starts_after(max(error, start + 1))]:
            pos = after_comma.match(text, line_start).end()  # type: ignore[union-attr]
            if pos >= len(text) or text[pos] != text[start] or "\n" in text[line_start:pos]:
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
        pos = self.skip(pos)
        if pos >= len(self.text):
            return
        self.src.more(pos + _PREVIEW)  # the extra data's preview
        line = self.src.line(pos)
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
