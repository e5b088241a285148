"""Rows whose language differs from the rest of the set (script + stopword heuristic)."""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from pathlib import Path

from tunesmith.audit.context import AuditContext
from tunesmith.audit.registry import register
from tunesmith.audit.report import Finding
from tunesmith.config.yaml_load import load_table

_LATIN_WORD = re.compile(r"[a-zà-öø-ÿ']+")
_ANY_WORD = re.compile(r"\w+")


@cache
def _catalogue() -> tuple[dict[str, re.Pattern[str]], dict[str, frozenset[str]]]:
    data = load_table(Path(__file__).parents[1].joinpath("languages.yaml").read_text("utf-8"))
    scripts = {name: re.compile(rx) for name, rx in data["scripts"].items()}
    return scripts, {lang: frozenset(words) for lang, words in data["stopwords"].items()}


def guess_language(text: str, min_words: int, min_hits: int) -> str | None:
    """A language code (Latin script) or a script name; None when the text is too short to tell."""
    scripts, stopwords = _catalogue()
    if not text.isascii():
        counts = {name: len(rx.findall(text)) for name, rx in scripts.items()}
        script = max(counts, key=counts.__getitem__)
        if counts[script] == 0:
            return None
        if script != "Latin":
            return script
    words = set(_LATIN_WORD.findall(text.lower()))
    if len(words) < min_words:
        return None
    hits = sorted(((len(words & sw), lang) for lang, sw in stopwords.items()), reverse=True)
    (best, lang), (second, _) = hits[0], hits[1]
    return lang if best >= min_hits and best >= 2 * second else None  # a clear winner only


@register("language_mix")
def language_mix(ctx: AuditContext) -> Finding | None:
    """Rows in a language other than the set's majority language."""
    g = ctx.g("language_mix")
    v = ctx.views
    langs: list[str | None] = []
    for i in range(len(ctx.records)):
        text = v.response[i] if len(_ANY_WORD.findall(v.response[i][:200])) >= g["min_words"] else v.first_user[i]
        langs.append(guess_language(text[: g["sample_chars"]], g["min_words"], g["min_stopword_hits"]))
    counts = Counter(lang for lang in langs if lang is not None)
    ctx.stats["languages"] = dict(counts.most_common())
    if len(counts) < 2:
        return None
    major, n_major = counts.most_common(1)[0]
    known = sum(counts.values())
    others = [ctx.records[i] for i, lang in enumerate(langs) if lang is not None and lang != major]
    share = len(others) / known
    mix = ", ".join(f"{lang} {n / known:.0%}" for lang, n in counts.most_common(5))
    if share <= g["stray_share"]:
        return Finding.for_rows(
            "language_mix", "warning", others,
            f"{len(others)} row(s) are not in the set's main language ({major}; {mix}).",
            "Translate or drop them, or add enough of each language on purpose (skip this check then).",
        )
    return Finding.for_rows(
        "language_mix", "info", others,
        f"the set mixes languages ({mix}).",
        "Fine if intended; make sure eval covers each language in the same proportion.",
    )
