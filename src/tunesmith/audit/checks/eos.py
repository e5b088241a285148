"""After templating: every trained span ends in a trained stop token; every row can be templated."""

from __future__ import annotations

from collections import Counter

import numpy as np

from tunesmith.audit.context import AuditContext, Encoded
from tunesmith.audit.registry import register
from tunesmith.audit.report import Finding
from tunesmith.errors import TunesmithError
from tunesmith.tokenize.preview import runs


def span_ends(encoded: Encoded) -> list[int]:
    """Label (= token id) at the last position of each trained span (contiguous labels != IGNORE)."""
    return [int(encoded.labels[end - 1]) for _, end, trained in runs(encoded.labels) if trained]


def _sample(indices: list[int], limit: int) -> list[int]:
    if len(indices) <= limit:
        return indices
    picks = np.linspace(0, len(indices) - 1, limit).round().astype(int)
    return [indices[k] for k in picks]


def encoded_sample(ctx: AuditContext) -> dict[int, Encoded | str]:
    """Row index -> its templated encoding, or the template's error; at most ``max_rows`` evenly
    spaced conversation rows per split."""
    if "encoded" not in ctx.cache and ctx.tokens is not None:
        limit = ctx.g("missing_eos")["max_rows"]
        out: dict[int, Encoded | str] = {}
        picked = [i for split in ctx.present_splits()
                  for i in _sample([i for i in ctx.indices(split) if ctx.kinds[i] != "text"], limit)]
        for i, enc in zip(picked, ctx.tokens.encode_many([ctx.records[i] for i in picked])):
            out[i] = str(enc) if isinstance(enc, TunesmithError) else enc
        ctx.cache["encoded"] = out
        ctx.stats["templated_rows_checked"] = len(out)
    encoded: dict[int, Encoded | str] = ctx.cache.get("encoded", {})
    return encoded


@register("missing_eos", needs=("encoder",))
def missing_eos(ctx: AuditContext) -> Finding | None:
    """Rows whose templated sequence has no trained token, or a trained span not ending in a stop token."""
    hooks = ctx.tokens
    if hooks is None:
        return None
    encoded = {i: e for i, e in encoded_sample(ctx).items() if not isinstance(e, str)}
    rows, endings, untrained = [], Counter[int](), 0
    for i, enc in encoded.items():
        ends = span_ends(enc)
        bad = [t for t in ends if t not in hooks.stop_ids]
        if bad or not ends:
            rows.append(ctx.records[i])
            endings.update(bad)
            untrained += not ends
    if not rows:
        return None
    stops = ", ".join(repr(hooks.token_text(t)) for t in sorted(hooks.stop_ids)) or "(none known)"
    seen = ", ".join(f"{hooks.token_text(t)!r} x{n}" for t, n in endings.most_common(3))
    parts = [f"trained spans end with {seen}"] if endings else []
    parts += [f"{untrained} row(s) have no trained token at all"] if untrained else []
    return Finding.for_rows(
        "missing_eos", "error", rows,
        f"{len(rows)} of {len(encoded)} templated row(s) do not end their trained output with a stop token "
        f"({stops}): {'; '.join(parts)}. The model will not learn to stop.",
        "Use a chat template that closes every assistant turn with an end-of-turn token, keep that token "
        "trained, and give every row an assistant turn to train (loss weight > 0).",
    )


@register("template_error", needs=("encoder",))
def template_error(ctx: AuditContext) -> Finding | None:
    """Rows the chat template cannot render or whose trained spans cannot be located."""
    failed = {i: e for i, e in encoded_sample(ctx).items() if isinstance(e, str)}
    if not failed:
        return None
    reasons = Counter(failed.values())
    shown = "; ".join(f"{n} x {why}" for why, n in reasons.most_common(2))
    return Finding.for_rows(
        "template_error", "error", ctx.rows(sorted(failed)),
        f"{len(failed)} row(s) cannot be templated ({shown}).",
        "Fix the rows (roles, order, tool calls) or choose a chat_template that supports them.",
    )
