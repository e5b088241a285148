"""Deterministic probe checks: one function per ``check.type`` of a probe item, in one table.

Each takes the reply and the item's ``check`` mapping and returns pass/fail; ``REQUIRED`` names
the keys each type needs (the probe file is validated against it before any generation).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache
from importlib.resources import files
from typing import Any

from tunesmith.config.yaml_load import load_table
from tunesmith.evaluate.scorers.text import last_number, normalise

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL | re.IGNORECASE)


@lru_cache(maxsize=1)
def refusal_markers() -> tuple[str, ...]:
    """The refusal phrases of ``refusal.yaml``, lower-cased."""
    data = load_table(files("tunesmith.evaluate.probes").joinpath("refusal.yaml").read_text("utf-8"))
    return tuple(str(m).lower() for m in data["markers"])


@lru_cache(maxsize=1)
def _refusal_pattern() -> re.Pattern[str]:
    """Any marker as whole words: "as an ai" is not in "as an aid", "i can't" not in "hawaii can't"."""
    alternatives = "|".join(re.escape(m) for m in sorted(refusal_markers(), key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def refuses(reply: str) -> bool:
    """The reply contains a refusal phrase as whole words (case-insensitive; curly apostrophes count
    as straight)."""
    text = reply.lower().replace("\u2019", "'")
    return _refusal_pattern().search(text) is not None


def _values(check: dict[str, Any]) -> list[str]:
    value = check["value"]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _number(reply: str, check: dict[str, Any]) -> bool:
    got = last_number(reply)
    return got is not None and abs(got - float(check["value"])) <= float(check.get("tolerance", 1e-9))


def _number_range(reply: str, check: dict[str, Any]) -> bool:
    got = last_number(reply)
    return got is not None and float(check["min"]) <= got <= float(check["max"])


def _contains(reply: str, check: dict[str, Any]) -> bool:
    text = f" {normalise(reply)} "
    return any(f" {normalise(v)} " in text for v in _values(check))


def _exact(reply: str, check: dict[str, Any]) -> bool:
    return normalise(reply) in {normalise(v) for v in _values(check)}


def _one_word(reply: str, check: dict[str, Any]) -> bool:
    words = normalise(reply).split()
    return len(words) == 1 and ("value" not in check or words[0] in {normalise(v) for v in _values(check)})


def _regex(reply: str, check: dict[str, Any]) -> bool:
    flags = re.IGNORECASE if check.get("ignore_case") else 0
    return re.search(check["pattern"], reply.strip(), flags) is not None


def _starts_with(reply: str, check: dict[str, Any]) -> bool:
    return reply.strip().lstrip("\"'").startswith(str(check["value"]))


def _json(reply: str, check: dict[str, Any]) -> bool:
    text = reply.strip()
    fenced = _FENCE.match(text)
    try:
        value = json.loads(fenced.group(1) if fenced else text)
    except (ValueError, RecursionError):
        return False
    return bool(value == check["value"])


def _refusal(reply: str, check: dict[str, Any]) -> bool:
    return refuses(reply)


def _no_refusal(reply: str, check: dict[str, Any]) -> bool:
    return bool(reply.strip()) and not refuses(reply)


CHECKS: dict[str, Callable[[str, dict[str, Any]], bool]] = {
    "number": _number,
    "number_range": _number_range,
    "contains": _contains,
    "exact": _exact,
    "one_word": _one_word,
    "regex": _regex,
    "starts_with": _starts_with,
    "json": _json,
    "refusal": _refusal,
    "no_refusal": _no_refusal,
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "number": ("value",), "number_range": ("min", "max"), "contains": ("value",), "exact": ("value",),
    "one_word": (), "regex": ("pattern",), "starts_with": ("value",), "json": ("value",), "refusal": (),
    "no_refusal": (),
}
