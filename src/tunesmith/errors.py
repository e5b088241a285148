"""User-facing errors.

Every mistake a user can make (bad config, bad data, missing file) raises a subclass of
:class:`TunesmithError`. The CLI prints its message without a traceback and exits
:data:`EXIT_USER_ERROR`; any other exception is a bug in tunesmith: the CLI writes the
traceback to a file, prints one line saying where, and exits :data:`EXIT_INTERNAL_ERROR`.
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dataclasses import dataclass

EXIT_OK = 0
EXIT_USER_ERROR = 1
"""A mistake in the input (config, data, paths, run directory): fix it and run again."""
EXIT_USAGE = 2
"""The command line itself is wrong (unknown option, missing argument): click's code."""
EXIT_INTERNAL_ERROR = 70
"""A bug in tunesmith (EX_SOFTWARE): please report it with the written traceback."""
EXIT_INTERRUPTED = 130


class TunesmithError(Exception):
    """An error caused by user input; printed without a traceback."""

    exit_code = EXIT_USER_ERROR


class ConfigError(TunesmithError):
    """The configuration is invalid; the message names the YAML path and value."""


def location(file: str, row: int | None = None, line: int | None = None) -> str:
    """Where a row is, the one format of every message: ``file:line`` where the file has lines,
    ``file[row N]`` otherwise, the file alone when neither is known."""
    if line is not None:
        return f"{file}:{line}"
    return f"{file}[row {row}]" if row is not None else file


@dataclass(frozen=True)
class RowError:
    """One invalid input row: where it is, which field, and what is wrong."""

    source: str
    row: int | None
    field: str | None
    message: str
    line: int | None = None

    @property
    def location(self) -> str:
        return location(self.source, self.row, self.line)

    def __str__(self) -> str:
        where = f"{self.field} " if self.field else ""
        return f"{self.location}: {where}{self.message}".rstrip()


class DataError(TunesmithError):
    """One or more input rows (or files) are invalid."""

    SKIP_HINT = "(set on_bad_rows: skip to drop them; every skipped row is written to rejected_rows.jsonl)"

    def __init__(self, errors: list[RowError], total_rows: int | None = None, shown: int = 20,
                 hint: str | None = SKIP_HINT):
        self.errors = errors
        self.total_rows = total_rows
        lines = [str(e) for e in errors[:shown]]
        if len(errors) > shown:
            lines.append(f"... and {len(errors) - shown} more invalid rows")
        head = f"{len(errors)} invalid row{'s' if len(errors) != 1 else ''}"
        if total_rows is not None:
            head += f" out of {total_rows}"
        super().__init__("\n".join([head + ":", *lines, *([hint] if hint else [])]))


def did_you_mean(word: str, options: Iterable[str], cutoff: float = 0.6, shown: Mapping[str, str] | None = None) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``options`` to ``word``, or ``""``: the one hint
    every "unknown name" message in tunesmith uses. ``shown`` maps an option to the name the hint
    shows instead (e.g. a normalised spelling or an alias to the name to write)."""
    import difflib

    match = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=cutoff)
    if not match:
        return ""
    return f" (did you mean '{(shown or {}).get(match[0], match[0])}'?)"
