"""RAG data: enough abstention examples ("the answer is not in the context")."""

from __future__ import annotations

import math

from tunesmith.audit.context import AuditContext
from tunesmith.audit.registry import register
from tunesmith.audit.report import Finding


def is_rag(record_fmt: str, meta: dict[str, object]) -> bool:
    return record_fmt == "rag" or "abstention" in meta


@register("rag_no_negatives")
def rag_no_negatives(ctx: AuditContext) -> Finding | None:
    """Too few rows teach the model to say the context does not hold the answer."""
    rag = [r for r, s in zip(ctx.records, ctx.split) if s == "train" and is_rag(r.fmt, r.meta)]
    if not rag:
        return None
    target = float(ctx.g("rag_no_negatives")["min_share"])
    negatives = sum(1 for r in rag if r.meta.get("abstention"))
    share = negatives / len(rag)
    ctx.stats["rag_abstention_share"] = round(share, 4)
    if share >= target:
        return None
    missing = math.ceil((target * len(rag) - negatives) / (1 - target))
    return Finding(
        "rag_no_negatives", "warning", missing,
        f"only {negatives} of {len(rag)} RAG rows ({share:.0%}) are abstentions (guideline: at least "
        f"{target:.0%}): the model will invent answers when the context lacks them.",
        f"Add about {missing} rows whose context does not contain the answer and whose answer is the "
        "abstention text (e.g. 'Not found in context').",
    )
