"""Rows whose language differs from the rest of the set (script + stopword heuristic)."""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from pathlib import Path

from tunesmith.audit.context import AuditContext
from tunesmith.audit.registry import register
from tunesmith.audit.report import Finding
from tunesmith.audit.words import latin_words, word_count
from tunesmith.config.yaml_load import load_table


@cache
def _catalogue() -> tuple[dict[str, re.Pattern[str]], dict[str, frozenset[str]], frozenset[str]]:
    """Script patterns, stopwords per language, and every stopword of any language."""
    data = load_table(Path(__file__).parents[1].joinpath("languages.yaml").read_text("utf-8"))
    scripts = {name: re.compile(rx) for name, rx in data["scripts"].items()}
    stopwords = {lang: frozenset(words) for lang, words in data["stopwords"].items()}
    return scripts, stopwords, frozenset().union(*stopwords.values())


def _distinct_at_least(words: list[str], n: int) -> bool:
    """``len(set(words)) >= n``, hashing only the first ``n`` words when they already differ."""
    return len(words) >= n and (len(set(words[:n])) == n or len(set(words)) >= n)


def guess_language(text: str, min_words: int, min_hits: int) -> str | None:
    """A language code (Latin script) or a script name; None when the text is too short to tell."""
    scripts, stopwords, any_stopword = _catalogue()
    if not text.isascii():
        counts = {name: len(rx.findall(text)) for name, rx in scripts.items()}
        script = max(counts, key=counts.__getitem__)
        if counts[script] == 0:
            return None
        if script != "Latin":
            return script
    words = latin_words(text.lower())
    if not _distinct_at_least(words, min_words):
        return None
    found = any_stopword.intersection(words)  # the distinct words that are some language's stopword
    if len(found) < min_hits:  # no language can have enough hits
        return None
    hits = sorted(((len(found & sw), lang) for lang, sw in stopwords.items()), reverse=True)
    (best, lang), (second, _) = hits[0], hits[1]
    return lang if best >= min_hits and best >= 2 * second else None  # a clear winner only


@register("language_mix")
def language_mix(ctx: AuditContext) -> Finding | None:
    """Rows in a language other than the set's majority language."""
    g = ctx.g("language_mix")
    v = ctx.views
    langs: list[str | None] = []
    for i in range(len(ctx.records)):
        text = v.response[i] if word_count(v.response[i][:200]) >= g["min_words"] else v.first_user[i]
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
