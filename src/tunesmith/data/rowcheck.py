"""Checks every raw row passes before a format parser sees it, each failure with a named reason.

- **duplicate keys** in one JSON object (JSON parsers silently keep the last value);
- **nesting depth** above :data:`MAX_DEPTH` (deep nesting used to raise RecursionError and
  abort the whole run; later stages recurse over values too);
- **lone surrogates** (``"\\ud800"``: half of a UTF-16 pair, not a character; such strings pass a
  JSON parser but crash tokenizers and UTF-8 writers later);
- **invalid UTF-8** bytes kept by ``surrogateescape`` decoding, so one bad byte spoils one row;
- **row size** above the dataset's ``max_row_bytes``.

The fast paths (``str.count``, one regex search) keep ordinary rows at C speed.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64
"""Deepest nesting of objects/lists a row may have (chat rows with tool calls use < 10)."""

_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_BAD_BYTE = re.compile("[\udc80-\udcff]")  # what surrogateescape turns an invalid byte into


class RowProblem(Exception):
    """A row fails a check; ``field`` names where (None: the row as a whole)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        self.key = key


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


STRICT_DECODER = json.JSONDecoder(object_pairs_hook=_pairs)
"""A decoder that raises on duplicate keys (use :func:`decode`, which turns that into RowProblem)."""
PLAIN_DECODER = json.JSONDecoder()


def duplicate_problem(key: str) -> RowProblem:
    return RowProblem(f"has the key '{key}' twice in one object (JSON keeps only the last value; remove one)")


def depth_problem() -> RowProblem:
    return RowProblem(f"is nested deeper than {MAX_DEPTH} levels of objects/lists")


def decode(text: str, pos: int = 0) -> tuple[Any, int]:
    """``raw_decode`` with the duplicate-key and depth checks; JSONDecodeError passes through."""
    try:
        return STRICT_DECODER.raw_decode(text, pos)
    except _DuplicateKey as exc:
        raise duplicate_problem(exc.key) from None
    except RecursionError:
        raise depth_problem() from None


def loads(text: str) -> Any:
    """``json.loads`` of one row's text with every check of this module (JSONDecodeError passes through)."""
    value, end = decode(text, _skip_ws(text, 0))
    if text[end:].strip():
        raise json.JSONDecodeError("Extra data", text, _skip_ws(text, end))
    check_value(value, text)
    return value


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def check_value(value: Any, text: str | None = None) -> int:
    """Depth and lone-surrogate checks of a parsed row; ``text`` (its JSON) enables the fast paths.

    Returns the characters in the row's strings when it was walked (always without ``text``), else 0.
    """
    deep = text is None or text.count("{") + text.count("[") > MAX_DEPTH
    surrogates = text is None or _ESCAPED_SURROGATE.search(text) is not None
    return _walk(value, deep, surrogates) if deep or surrogates else 0


def check_text(text: str, field: str | None = None) -> None:
    """A string from a non-JSON source (CSV cell, text line): no lone surrogates."""
    match = _SURROGATE.search(text)
    if match:
        raise _surrogate(match.group(), field)


def bad_byte(text: str) -> int | None:
    """Offset of the first invalid byte (kept by surrogateescape decoding), or None."""
    match = _BAD_BYTE.search(text)
    return match.start() if match else None


def byte_of(char: str) -> int:
    """The original byte behind a surrogateescape character."""
    return ord(char) - 0xDC00


def _surrogate(char: str, field: str | None) -> RowProblem:
    return RowProblem(
        f"contains a lone surrogate \\u{ord(char):04x} (half of a UTF-16 pair, not a valid character); "
        "fix the writer that produced it", field,
    )


def _walk(value: Any, deep: bool, surrogates: bool) -> int:
    """Iterative walk (no recursion, whatever the depth) raising the first problem found;
    returns the number of characters in the row's strings."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    size = 0
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, dict):
            if deep and depth >= MAX_DEPTH:
                raise depth_problem()
            for key, item in node.items():
                where = f"{path}.{key}" if path else str(key)
                if surrogates and isinstance(key, str) and _SURROGATE.search(key):
                    raise _surrogate(_SURROGATE.search(key).group(), where)  # type: ignore[union-attr]
                stack.append((item, where, depth + 1))
        elif isinstance(node, list):
            if deep and depth >= MAX_DEPTH:
                raise depth_problem()
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(node))
        elif isinstance(node, str):
            size += len(node)
            match = _SURROGATE.search(node) if surrogates else None
            if match:
                raise _surrogate(match.group(), path or None)
    return size


def size_problem(size: int, limit: int) -> RowProblem | None:
    """A RowProblem when ``size`` bytes exceed ``limit`` (0: no limit)."""
    if not limit or size <= limit:
        return None
    return RowProblem(
        f"is too large: {size:,} bytes > max_row_bytes {limit:,} "
        "(raise max_row_bytes for this dataset if rows this big are intended)"
    )
