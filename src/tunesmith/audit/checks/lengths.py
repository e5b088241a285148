"""Token lengths: rows that sequence_len cuts, extreme outliers, and train/eval distribution shift."""

from __future__ import annotations

import numpy as np

from tunesmith.config.schema import Config
from tunesmith.audit.context import AuditContext
from tunesmith.audit.registry import register
from tunesmith.audit.report import Finding

_FATE = {
    "drop": "will be dropped",
    "truncate_prompt": "will lose the start of their prompt",
    "error": "will stop tokenization with an error",
}


def _chat(ctx: AuditContext, split: str) -> np.ndarray:
    """Indices of one split's rows that are conversations (text documents are windowed, not cut)."""
    return np.array([i for i in ctx.indices(split) if ctx.kinds[i] != "text"], dtype=np.int64)


@register("over_length", needs=("tokenizer", "lengths"))
def over_length(ctx: AuditContext) -> Finding | None:
    """Rows longer than ``sequence_len`` tokens after templating."""
    fields = Config.model_fields
    limit = ctx.config.sequence_len if ctx.config else fields["sequence_len"].default
    truncation = ctx.config.truncation if ctx.config else fields["truncation"].default
    idx = np.concatenate([_chat(ctx, s) for s in ctx.present_splits()] or [np.zeros(0, np.int64)])
    over = idx[ctx.lengths[idx] > limit]
    if over.size == 0:
        return None
    longest = int(ctx.lengths[over].max())
    return Finding.for_rows(
        "over_length", "error" if truncation == "error" else "warning", ctx.rows(over),
        f"{over.size} row(s) are longer than sequence_len ({limit} tokens; longest {longest}) and "
        f"{_FATE[truncation]} (truncation: {truncation}).",
        f"Raise sequence_len (to about {longest} to keep them all) or shorten/split these rows.",
    )


@register("length_outlier", needs=("lengths",))
def length_outlier(ctx: AuditContext) -> Finding | None:
    """Training rows beyond the p99 token length and far above the median (loss-spike risk)."""
    g = ctx.g("length_outlier")
    idx = _chat(ctx, "train")
    if idx.size < g["min_rows"]:
        return None
    lengths = ctx.lengths[idx]
    p99, median = np.percentile(lengths, g["percentile"]), float(np.median(lengths))
    cut = max(p99, g["min_factor_of_median"] * median)
    mask = lengths > cut
    if ctx.lengths_exact and ctx.config is not None:
        mask &= lengths <= ctx.config.sequence_len  # over_length reports those
    rows = idx[mask]
    if rows.size == 0:
        return None
    unit = "tokens" if ctx.lengths_exact else "tokens (estimated)"
    return Finding.for_rows(
        "length_outlier", "warning", ctx.rows(rows),
        f"{rows.size} training row(s) are extreme length outliers (> {cut:.0f} {unit}: beyond p"
        f"{g['percentile']} and {g['min_factor_of_median']}x the median {median:.0f}): they can spike the loss.",
        "Check these rows (pasted logs, repeated text?) and shorten or drop them.",
    )


@register("length_mismatch", needs=("lengths",))
def length_mismatch(ctx: AuditContext) -> Finding | None:
    """Eval/test token lengths distributed very differently from train (Kolmogorov-Smirnov)."""
    g = ctx.g("length_mismatch")
    train = ctx.lengths[_chat(ctx, "train")]
    if train.size < g["min_rows"]:
        return None
    shifted = []
    for split in ("eval", "test"):
        other = ctx.lengths[_chat(ctx, split)]
        if other.size < g["min_rows"]:
            continue
        from scipy.stats import ks_2samp  # 169 modules, ~1 s: only when a held-out split is compared

        result = ks_2samp(train, other)
        if result.statistic > g["max_ks"] and result.pvalue < g["max_p_value"]:
            shifted.append(f"{split} median {np.median(other):.0f} vs train {np.median(train):.0f} "
                           f"(KS {result.statistic:.2f})")
    if not shifted:
        return None
    return Finding(
        "length_mismatch", "warning", len(shifted),
        f"held-out lengths differ strongly from train: {'; '.join(shifted)}: evaluation will not "
        "measure what training teaches.",
        "Split held-out data from the same distribution as train (or re-split with val_set_size).",
    )
