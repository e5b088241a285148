"""Assistant outputs that are empty, trivially short, or cut off."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np

from tunesmith.audit.context import AuditContext
from tunesmith.audit.registry import register
from tunesmith.audit.report import Finding
from tunesmith.audit.words import word_count, words

_FENCE = re.compile(r"^\s*```", re.MULTILINE)
_LIST_ITEM = re.compile(r"\s*(?:[-*•+]|\d{1,3}[.)]|[a-zA-Z][.)])\s")  # "- item", "3. item", "b) item"
_SENTENCE_END = re.compile(r"[.!?] ")


@register("empty_response")
def empty_response(ctx: AuditContext) -> Finding | None:
    """An assistant turn (or a text document) with no content and no tool call."""
    rows = []
    for r in ctx.records:
        if r.kind == "text":
            empty = not (r.text or "").strip()
        elif r.kind == "preference":
            continue  # preference_empty reports empty sides
        else:
            empty = any(m.role == "assistant" and not m.content.strip() and not m.tool_calls for m in r.messages)
        if empty:
            rows.append(r)
    if not rows:
        return None
    return Finding.for_rows(
        "empty_response", "error", rows,
        f"{len(rows)} row(s) have an empty assistant output: the model learns to answer with nothing.",
        "Fill in or remove these rows (an intentional 'no answer' needs an explicit refusal text).",
    )


def _answer_indices(ctx: AuditContext) -> list[int]:
    """Rows whose final answer is prose to judge: not a tool call, not empty, not a text document."""
    v = ctx.views
    return [i for i, kind in enumerate(v.kind) if kind != "text" and not v.tool_answer[i] and v.response[i].strip()]


def _answer_words(ctx: AuditContext) -> dict[int, int]:
    """Word count (``\\w+``) of each answer of ``_answer_indices``, counted once for both checks here."""
    if "answer_words" not in ctx.cache:
        ctx.cache["answer_words"] = {i: word_count(ctx.views.response[i]) for i in _answer_indices(ctx)}
    counts: dict[int, int] = ctx.cache["answer_words"]
    return counts


@register("short_response")
def short_response(ctx: AuditContext) -> Finding | None:
    """Trivially short outputs in a set whose typical output is much longer."""
    g = ctx.g("short_response")
    v = ctx.views
    counts = _answer_words(ctx)
    idx = [i for i in counts if not isinstance(ctx.records[i].label, str)]
    if not idx:
        return None
    n_words = np.array([counts[i] for i in idx])
    median = float(np.median(n_words))
    if median < g["min_median_words"]:
        return None
    rows = [ctx.records[i] for i, n in zip(idx, n_words)
            if n <= g["max_words"] and len(v.response[i].strip()) <= g["max_chars"]]
    if not rows:
        return None
    return Finding.for_rows(
        "short_response", "warning", rows,
        f"{len(rows)} output(s) have at most {g['max_words']} word(s) while the median output has "
        f"{median:.0f}: the model may learn to answer curtly.",
        "Write full answers for these rows or drop them.",
    )


def _mid_sentence(text: str, dangling: frozenset[str], set_terminates: bool) -> bool:
    """Ends in a comma or a word that cannot end a sentence, or, in a set whose outputs
    end with punctuation, ends in a bare word."""
    if text.endswith((",", "-", "–", "(")):
        return True
    last = words(text[-40:])
    if last and last[-1].lower() in dangling and text[-1].isalpha():
        return True
    return set_terminates and text[-1].isalpha() and not _bare_by_design(text)


def _bare_by_design(text: str) -> bool:
    """The last line is a list item (not made of sentences), or the text ends in a hashtag: no sentence
    to finish."""
    line = text[text.rfind("\n") + 1 :]
    item = _LIST_ITEM.match(line)
    if item and not _SENTENCE_END.search(line, item.end()):
        return True
    return text[text.rfind(" ") + 1 :].startswith("#")


def _unbalanced(text: str) -> bool:
    pairs = (("(", ")"), ("[", "]"), ("{", "}"), ("“", "”"))
    return any(text.count(a) > text.count(b) for a, b in pairs) or text.count('"') % 2 == 1


def _is_json(text: str) -> bool:
    if not text.startswith(("{", "[")):
        return False
    try:
        json.loads(text)
    except (ValueError, RecursionError):  # a reply nested thousands deep is not usable JSON either
        return False
    return True


def _shape(ctx: AuditContext, idx: list[int], min_words: int, terminal: str
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per answer of ``idx``: long enough to judge, valid JSON, ends in a terminal character."""
    long_enough, is_json, ends = (np.zeros(len(idx), dtype=bool) for _ in range(3))
    counts = _answer_words(ctx)  # stripping changes no word
    for n, i in enumerate(idx):
        t = ctx.views.response[i].strip()
        long_enough[n] = counts[i] >= min_words
        is_json[n] = _is_json(t)
        ends[n] = t[-1] in terminal
    return long_enough, is_json, ends


@register("truncated_response")
def truncated_response(ctx: AuditContext) -> Finding | None:
    """Outputs that stop mid-sentence, leave brackets/quotes/code fences open, or break JSON."""
    g = ctx.g("truncated_response")
    idx = _answer_indices(ctx)
    if not idx:
        return None
    terminal, dangling = g["terminal_chars"], frozenset(g["dangling_words"])
    long_enough, is_json, ends = _shape(ctx, idx, g["min_words"], terminal)  # one pass; the texts are not kept
    judged = long_enough & ~is_json  # whether the prose ends in punctuation is judged on prose only
    set_terminates = bool(judged.any()) and ends[judged].sum() / judged.sum() >= g["terminal_share"]
    json_set = is_json.sum() / len(idx) >= g["json_share"]
    reasons: Counter[str] = Counter()
    rows = []
    for i, ok, js in zip(idx, long_enough, is_json):
        t = ctx.views.response[i].strip()
        if json_set:
            why = None if js else "invalid JSON"
        elif "```" in t and len(_FENCE.findall(t)) % 2 == 1:
            why = "an unclosed code fence"
        elif _unbalanced(t):
            why = "unbalanced brackets or quotes"
        elif ok and _mid_sentence(t, dangling, set_terminates):
            why = "a stop mid-sentence"
        else:
            why = None
        if why:
            reasons[why] += 1
            rows.append(ctx.records[i])
    if not rows:
        return None
    detail = ", ".join(f"{n} with {why}" for why, n in reasons.most_common())
    return Finding.for_rows(
        "truncated_response", "warning", rows,
        f"{len(rows)} output(s) look cut off ({detail}): the model learns to stop early.",
        "Regenerate or complete these outputs (check max_tokens of the generator that wrote them).",
    )
