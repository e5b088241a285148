"""The format registry and automatic detection.

Each module here defines one ``FORMAT``; detection scores the keys of the first rows
against every format (after field remapping) and picks the most specific match.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from tunesmith.config.schema import DatasetSpec
from tunesmith.data.formats import alpaca, chat, classification, kto, preference, rag, sharegpt, text
from tunesmith.data.formats.base import Format

REGISTRY: dict[str, Format] = {
    f.name: f
    for f in (
        chat.FORMAT,
        sharegpt.FORMAT,
        alpaca.FORMAT,
        preference.FORMAT,
        kto.FORMAT,
        text.FORMAT,
        classification.FORMAT,
        rag.FORMAT,
    )
}


def best_format(keys: Iterable[str], spec: DatasetSpec) -> str | None:
    """The most specific format a row with these keys fits (ties: registry order), or None."""
    keyset = set(keys)
    name, score = None, 0
    for fmt in REGISTRY.values():
        s = fmt.score(keyset, spec)
        if s > score:
            name, score = fmt.name, s
    return name


def detect(rows: Iterable[dict[str, Any]], spec: DatasetSpec) -> str | None:
    """The format most of ``rows`` fit, or None when none fits any."""
    votes = Counter(best_format(row, spec) for row in rows)
    votes.pop(None, None)
    if not votes:
        return None
    top = max(votes.values())
    return next(name for name in REGISTRY if votes.get(name) == top)


def describe() -> str:
    """``chat (messages | ...), alpaca (...)``: what each format expects, for error messages."""
    return "; ".join(f"{f.name} ({f.hint})" for f in REGISTRY.values())
