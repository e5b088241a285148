"""Dataset size against the size guidelines for the task type, and class balance."""

from __future__ import annotations

from collections import Counter

from tunesmith.audit.checks.rag import is_rag
from tunesmith.audit.context import AuditContext
from tunesmith.audit.registry import register
from tunesmith.audit.report import Finding


def task_type(ctx: AuditContext) -> str:
    """classification, sft, tool_use, rag, preference, kto or cpt, judged from the training rows."""
    if "task_type" not in ctx.cache:
        ctx.cache["task_type"] = _task_type(ctx, ctx.indices("train"))
    task: str = ctx.cache["task_type"]
    return task


def _task_type(ctx: AuditContext, idx: list[int]) -> str:
    """``task_type``: the training rows read one at a time (never all held: they may be on disk)."""
    if not idx:
        return "sft"
    kind = Counter(ctx.kinds[i] for i in idx).most_common(1)[0][0]
    if kind != "sft":
        return {"preference": "preference", "kto": "kto", "text": "cpt"}[kind]
    if sum(isinstance(ctx.records[i].label, str) for i in idx) > len(idx) / 2:
        return "classification"
    train = (ctx.records[i] for i in idx)
    if any(is_rag(r.fmt, r.meta) for r in train):
        return "rag"
    train = (ctx.records[i] for i in idx)
    if any(r.tools or any(m.tool_calls for m in r.messages) for r in train):
        return "tool_use"
    return "sft"


def class_counts(ctx: AuditContext) -> Counter[str]:
    """Training rows per class (classification labels; KTO desirable/undesirable)."""
    classes = (_class_of(ctx.records[i].label) for i in ctx.indices("train"))
    return Counter(c for c in classes if c is not None)


def _class_of(label: bool | str | None) -> str | None:
    if isinstance(label, bool):
        return "desirable" if label else "undesirable"
    return label


@register("class_imbalance")
def class_imbalance(ctx: AuditContext) -> Finding | None:
    """The largest class outnumbers the smallest by more than the guideline ratio."""
    counts = class_counts(ctx)
    if counts:
        ctx.stats["classes"] = dict(counts.most_common())
    if len(counts) < 2:
        return None
    largest = counts.most_common(1)[0][1]
    ratio = largest / min(counts.values())
    limit = ctx.g("class_imbalance")["max_ratio"]
    if ratio <= limit:
        return None
    small = {c for c, n in counts.items() if n * limit < largest}
    rows = [ctx.records[i] for i in ctx.indices("train") if _class_of(ctx.records[i].label) in small]
    shown = ", ".join(f"{c} {n}" for c, n in counts.most_common())
    return Finding.for_rows(
        "class_imbalance", "warning", rows,
        f"classes are imbalanced ({shown}; largest/smallest = {ratio:.0f}x > {limit}x): the model will "
        "favour the large classes.",
        f"Add examples of {', '.join(sorted(small))} (or downsample the largest class).",
    )


@register("too_few_examples", needs=("lengths",))
def too_few_examples(ctx: AuditContext) -> Finding | None:
    """Fewer training rows (per class, or tokens for cpt) than the size guidelines for the task."""
    task = task_type(ctx)
    g = ctx.g("too_few_examples")[task]
    ctx.stats["task_type"] = task
    n = len(ctx.indices("train"))
    if task == "classification":
        counts = class_counts(ctx)
        low = {c: k for c, k in counts.items() if k < g["min_per_class"]}
        if not low:
            return None
        missing = sum(g["min_per_class"] - k for k in low.values())
        shown = ", ".join(f"{c} {k}" for c, k in sorted(low.items(), key=lambda kv: kv[1]))
        what = f"{len(low)} class(es) have fewer than {g['min_per_class']} examples ({shown})"
        fix = f"Add about {missing} examples to these classes (recommended: {g['recommended_per_class']} per class)."
    elif task == "cpt":
        tokens = int(ctx.lengths[ctx.indices("train")].sum())
        if tokens >= g["min_tokens"]:
            return None
        missing = g["min_tokens"] - tokens
        what = f"the corpus has about {tokens:,} tokens (guideline for continued pretraining: {g['min_tokens']:,})"
        fix = f"Add about {missing:,} tokens of domain text (recommended: {g['recommended_tokens']:,})."
    else:
        if n >= g["min"]:
            return None
        missing = g["min"] - n
        what = f"{n} training rows for a {task} task (guideline: at least {g['min']})"
        fix = f"Add about {missing} rows (recommended: {g['recommended']}); until then expect noisy results."
    return Finding("too_few_examples", "warning", missing, what + ".", fix)
