"""Preference pairs: empty sides, chosen == rejected, and contradicting pairs."""

from __future__ import annotations

from tunesmith.audit.context import AuditContext
from tunesmith.audit.registry import register
from tunesmith.audit.report import Finding, location


def _preference(ctx: AuditContext) -> list[int]:
    return [i for i, kind in enumerate(ctx.views.kind) if kind == "preference"]


def _empty(side_text: str, has_tool_call: bool) -> bool:
    return not side_text.strip() and not has_tool_call


@register("preference_empty")
def preference_empty(ctx: AuditContext) -> Finding | None:
    """A preference pair with an empty chosen or rejected side."""
    v = ctx.views
    rows = [ctx.records[i] for i in _preference(ctx)
            if _empty(v.response[i], v.tool_answer[i])
            or _empty(v.rejected[i], any(m.tool_calls for m in ctx.records[i].rejected))]
    if not rows:
        return None
    return Finding.for_rows(
        "preference_empty", "error", rows,
        f"{len(rows)} preference pair(s) have an empty chosen or rejected side.",
        "Fill in both sides or drop these pairs.",
    )


@register("preference_identical")
def preference_identical(ctx: AuditContext) -> Finding | None:
    """chosen == rejected: the pair carries no preference, only noise."""
    v = ctx.views
    rows = [ctx.records[i] for i in _preference(ctx)
            if ctx.records[i].chosen == ctx.records[i].rejected
            or (v.response[i].strip() and v.response[i].strip() == v.rejected[i].strip())]
    if not rows:
        return None
    return Finding.for_rows(
        "preference_identical", "error", rows,
        f"{len(rows)} preference pair(s) have identical chosen and rejected responses.",
        "Drop these pairs or replace the rejected side with a genuinely worse response.",
    )


@register("preference_conflict")
def preference_conflict(ctx: AuditContext) -> Finding | None:
    """The same prompt and pair of responses with the preference reversed in another row."""
    v = ctx.views
    first: dict[tuple[str, str, str], int] = {}
    rows = []
    pair = None
    for i in _preference(ctx):
        key = (v.prompt[i], v.response[i].strip(), v.rejected[i].strip())
        if key[1] == key[2]:
            continue
        other = first.get((key[0], key[2], key[1]))
        if other is not None:
            rows.append(ctx.records[i])
            pair = pair or (ctx.records[other], ctx.records[i])
        first.setdefault(key, i)
    if not rows or pair is None:
        return None
    a, b = location(pair[0]), location(pair[1])
    return Finding.for_rows(
        "preference_conflict", "error", rows,
        f"{len(rows)} preference pair(s) reverse an earlier pair on the same prompt (e.g. {b} vs {a}): "
        "the two cancel out.",
        "Decide which response is better for each such prompt and keep one consistent pair.",
    )
