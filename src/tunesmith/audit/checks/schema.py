"""Rows that ingestion could not read, counted per kind of error."""

from __future__ import annotations

import re
from collections import Counter

from tunesmith.audit.context import AuditContext
from tunesmith.audit.registry import register
from tunesmith.audit.report import Finding
from tunesmith.errors import RowError

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_GOT = re.compile(r"\s*\(got [^)]*\)")
_NUMBER = re.compile(r"\d+")


def error_kind(error: RowError) -> str:
    """The kind of a row error: its field and message with values, quotes and numbers blanked."""
    message = _NUMBER.sub("N", _QUOTED.sub("'...'", _GOT.sub("", error.message)))
    return f"{error.field}: {message}" if error.field else message


def _where(error: RowError) -> str:
    return error.location  # file:line, or file[row N] where the file has no lines


@register("schema")
def schema(ctx: AuditContext) -> Finding | None:
    """Ingestion errors (missing fields, wrong types, unreadable rows), grouped per kind."""
    if not ctx.errors:
        return None
    kinds = Counter(error_kind(e) for e in ctx.errors)
    ctx.stats["schema_errors"] = dict(kinds.most_common())
    skip = ctx.config is not None and ctx.config.on_bad_rows == "skip"
    shown = "; ".join(f"{n} x {kind}" for kind, n in kinds.most_common(5))
    more = f"; and {len(kinds) - 5} more kinds" if len(kinds) > 5 else ""
    return Finding(
        "schema", "warning" if skip else "error", len(ctx.errors),
        f"{len(ctx.errors)} row(s) could not be read ({shown}{more})"
        + (": on_bad_rows: skip drops them from training." if skip else "."),
        "Fix these rows (or map the fields with field_* keys in the dataset spec); "
        "`tunesmith data inspect FILE` shows how a file is read.",
        tuple(_where(e) for e in ctx.errors),
    )
