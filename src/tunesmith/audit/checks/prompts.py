"""Prompts: consistent system prompts, and varied phrasing (no template monotony)."""

from __future__ import annotations

import os
import re
from collections import Counter

from tunesmith.audit.context import AuditContext
from tunesmith.audit.registry import register
from tunesmith.audit.report import Finding
from tunesmith.audit.words import words

_DIGITS = re.compile(r"\d+")


def _short(text: str | None, n: int = 40) -> str:
    if text is None:
        return "(none)"
    return repr(text if len(text) <= n else text[: n - 3] + "...")


@register("system_prompt_inconsistent")
def system_prompt_inconsistent(ctx: AuditContext) -> Finding | None:
    """Several distinct system prompts, or one that differs from the configured ``system_prompt``."""
    configured = ctx.config.system_prompt if ctx.config is not None else None
    chat = [i for i, kind in enumerate(ctx.views.kind) if kind != "text"]
    systems = Counter(ctx.views.system[i] for i in chat)
    ctx.stats["system_prompts"] = len(systems)
    if configured is not None:
        flagged = [i for i in chat if ctx.views.system[i] not in (None, configured)]
        if not flagged:
            return None
        example = ctx.views.system[flagged[0]]
        how = " (only in whitespace)" if example is not None and example.split() == configured.split() else ""
        return Finding.for_rows(
            "system_prompt_inconsistent", "warning", ctx.rows(flagged),
            f"{len(flagged)} row(s) train with a system prompt that differs{how} from the configured "
            f"system_prompt, e.g. {_short(example)} vs {_short(configured)}: inference will not match training.",
            "Use the configured system_prompt byte for byte in the data, or drop the system turn from the rows.",
        )
    if len(systems) < 2:
        return None
    major = systems.most_common(1)[0][0]
    flagged = [i for i in chat if ctx.views.system[i] != major]
    variants = ", ".join(f"{_short(s)} x{n}" for s, n in systems.most_common(3))
    return Finding.for_rows(
        "system_prompt_inconsistent", "warning", ctx.rows(flagged),
        f"{len(systems)} distinct system prompts ({variants}); {len(flagged)} row(s) differ from the most common.",
        "Use one system prompt everywhere and set it as system_prompt in the config, so inference uses it too.",
    )


def _prefix(text: str, skip: int, n_words: int) -> str:
    """The first words, lower-cased, digits blanked (templates differ only in their slots)."""
    return _DIGITS.sub("#", " ".join(words(text[skip : skip + 200].lower())[:n_words]))


@register("template_monotony")
def template_monotony(ctx: AuditContext) -> Finding | None:
    """A large share of prompts begins with the same few words (built from a handful of templates)."""
    g = ctx.g("template_monotony")
    idx = [i for i in ctx.indices("train") if ctx.views.first_user[i].strip()]
    if len(idx) < g["min_rows"]:
        return None
    prompts = [ctx.views.first_user[i] for i in idx]
    shared = os.path.commonprefix(prompts)  # an instruction every row repeats is by design
    skip = shared.rfind(" ") + 1 if len(shared) < min(len(p) for p in prompts) else 0
    prefixes = [_prefix(p, skip, g["prefix_words"]) for p in prompts]
    top = Counter(prefixes).most_common(g["top_prefixes"])
    covered = sum(n for _, n in top)
    share = covered / len(prompts)
    ctx.stats["prompt_prefix_top_share"] = round(share, 4)
    if share <= g["max_share"]:
        return None
    heads = {p for p, _ in top}
    rows = [ctx.records[i] for i, p in zip(idx, prefixes) if p in heads]
    shown = ", ".join(f"'{p}...' {n / len(prompts):.0%}" for p, n in top[:3])
    return Finding.for_rows(
        "template_monotony", "warning", rows,
        f"{share:.0%} of prompts begin with one of {len(top)} phrasings ({shown}): the model may only "
        "work for prompts worded like these.",
        "Paraphrase the prompts (vary wording, length and order) or add naturally written ones.",
    )
