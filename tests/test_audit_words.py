"""The audit's fast word paths equal the regular expressions they replace, and the faster checks
still find what they found (ASCII fast paths, phone numbers written in other scripts' digits)."""

from __future__ import annotations

import random
import re

from audit_rows import chat, clean_chat, finding, replace, where

from tunesmith.audit import audit_records
from tunesmith.audit.checks.language import _distinct_at_least
from tunesmith.audit.words import latin_words, word_count, words

TRICKY = [
    "", " ", "\n\t", "plain words here", "  leading and trailing  ", "snake_case and CamelCase x1 2x __",
    "don't stop; it's 3.14-ish, (really) [ok] {yes} \"quoted\" 'single'", "tab\tnew\nline\r\x0bvt\x0cff",
    "a\x00b\x1fc\x7fd", "Crème brûlée à la façon de l'été", "Straße, Ærø, Øresund, þorn", "Вулканы и магма",
    "日本語のテキスト", "KELVIN \u212a sign", "İstanbul ǅemal", "mixed ascii then é at the end",
    "digits ٣٤٥ arabic-indic", "emoji 🙂 between words", "under_score_only ___ 'quote' o'clock",
]


def _random_texts(n: int = 400) -> list[str]:
    rng = random.Random(3)
    alphabet = "abcXYZ019_ '-.,;:!?()\n\t\"éßÆ€Ж日\u212a\x00"
    return [
        "".join(rng.choice(alphabet[:22] if k % 2 else alphabet) for _ in range(rng.randint(0, 60)))
        for k in range(n)
    ]


def test_word_paths_equal_the_regular_expressions() -> None:
    latin = re.compile(r"[a-zà-öø-ÿ']+")
    for text in TRICKY + _random_texts():
        assert words(text) == re.findall(r"\w+", text), text
        assert word_count(text) == len(re.findall(r"\w+", text)), text
        lowered = text.lower()
        assert latin_words(lowered) == latin.findall(lowered), text


def test_distinct_at_least() -> None:
    assert _distinct_at_least(["a", "b", "c"], 3) and not _distinct_at_least(["a", "b", "a", "b"], 3)
    assert not _distinct_at_least(["a", "b"], 3) and _distinct_at_least(["a", "a", "b", "a", "c"], 3)


def test_phone_in_other_digits_is_still_found_and_ascii_rows_without_digits_are_not() -> None:
    base = clean_chat()
    rows = replace(base, {
        3: chat(0, "Which number, case 3?", "Call +٤٤ ٢٠ ٧٩٤٦ ٠٩٥٨ during office hours, ça va."),  # non-ASCII digits
        5: chat(0, "What number, case 5?", "Call us on +44 20 7946 0958 during office hours."),
    })
    found = finding(audit_records(rows), "pii")
    assert set(found.locations) == where(rows, [3, 5]) and "2 with phone" in found.message


def test_language_mix_on_ascii_and_accented_rows() -> None:
    base = clean_chat()
    rows = replace(base, {
        9: chat(0, "Erklare Vulkane, Fall 9?", "Die Vulkane sind ein wichtiges Thema, und es ist nicht einfach, "
                                               "sie mit den Kindern zu erklaren, aber wir werden es versuchen."),
        19: chat(0, "Explique les volcans, cas 19?", "Les volcans sont très importants et il est difficile de les "
                                                     "expliquer aux enfants, mais nous allons essayer."),
    })
    report = audit_records(rows)
    assert set(finding(report, "language_mix").locations) == where(rows, [9, 19])
    assert report.stats["languages"] == {"en": 118, "de": 1, "fr": 1}
