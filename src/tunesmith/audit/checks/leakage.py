"""Label leakage: the expected answer already stands verbatim in the user's prompt."""

from __future__ import annotations

from tunesmith.audit.checks.rag import is_rag
from tunesmith.audit.context import AuditContext
from tunesmith.audit.registry import register
from tunesmith.audit.report import Finding


def _norm(text: str) -> str:
    """Whitespace collapsed, case folded: "verbatim" up to layout and capitals."""
    return " ".join(text.split()).casefold()


@register("label_leakage")
def label_leakage(ctx: AuditContext) -> Finding | None:
    """The answer (long enough to be no coincidence) is contained in a user turn of the same row.

    RAG rows are skipped (their answer is meant to be quoted from the context); system prompts and
    tool outputs are not searched.
    """
    g = ctx.g("label_leakage")
    rows = []
    for i, r in enumerate(ctx.records):
        if r.kind == "text" or is_rag(r.fmt, r.meta):
            continue
        answer = _norm(ctx.views.response[i])
        if len(answer) < g["min_chars"] or len(answer.split()) < g["min_words"]:
            continue
        users = _norm(" ".join(m.content for m in r.messages if m.role == "user"))
        if answer in users:
            rows.append(r)
    if not rows:
        return None
    return Finding.for_rows(
        "label_leakage", "warning", rows,
        f"{len(rows)} row(s) contain their expected answer verbatim in the prompt: the model learns to "
        "copy instead of answer, and evaluation on such rows is inflated.",
        "Remove the answer from the prompt (check the template that built these rows).",
    )
