"""missing_eos: after templating, every trained span must end in a trained end-of-turn/EOS token."""

from __future__ import annotations

from collections import Counter

import numpy as np

from tunesmith.data.audit.context import AuditContext, Encoded
from tunesmith.data.audit.registry import register
from tunesmith.data.audit.report import Finding


def span_ends(encoded: Encoded) -> list[int]:
    """Label (= token id) at the last position of each trained span (contiguous labels != -100)."""
    labels = np.asarray(encoded.labels)
    trained = labels != -100
    ends = np.flatnonzero(trained & ~np.append(trained[1:], False))
    return [int(labels[k]) for k in ends]


def _sample(indices: list[int], limit: int) -> list[int]:
    if len(indices) <= limit:
        return indices
    picks = np.linspace(0, len(indices) - 1, limit).round().astype(int)
    return [indices[k] for k in picks]


@register("missing_eos", needs=("encoder",))
def missing_eos(ctx: AuditContext) -> Finding | None:
    """Rows whose templated, trained sequence does not end each trained span with a stop token."""
    hooks = ctx.tokens
    if hooks is None:
        return None
    limit = ctx.g("missing_eos")["max_rows"]
    rows, checked = [], 0
    endings: Counter[int] = Counter()
    untrained = 0
    for split in ctx.present_splits():
        chat = [i for i in ctx.indices(split) if ctx.records[i].kind != "text"]
        for i in _sample(chat, limit):
            checked += 1
            ends = span_ends(hooks.encode(ctx.records[i]))
            bad = [t for t in ends if t not in hooks.stop_ids]
            if bad or not ends:
                rows.append(ctx.records[i])
                endings.update(bad)
                untrained += not ends
    ctx.stats["missing_eos_checked_rows"] = checked
    if not rows:
        return None
    stops = ", ".join(repr(hooks.token_text(t)) for t in sorted(hooks.stop_ids)) or "(none known)"
    seen = ", ".join(f"{hooks.token_text(t)!r} x{n}" for t, n in endings.most_common(3))
    detail = f"trained spans end with {seen}" if seen else ""
    if untrained:
        detail += ("; " if detail else "") + f"{untrained} row(s) have no trained token at all"
    every = " (every checked row: the chat template does not close the assistant turn)" if len(rows) == checked else ""
    return Finding.for_rows(
        "missing_eos", "error", rows,
        f"{len(rows)} of {checked} checked row(s) do not end their trained output with a stop token "
        f"({stops}){every}: {detail}. The model will not learn to stop.",
        "Use a chat template that appends the end-of-turn token after each assistant turn "
        "(chat_template: ...), and make sure that token is trained (not masked).",
    )
