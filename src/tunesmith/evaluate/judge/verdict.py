"""Parse and validate a judge's reply: one JSON object with the rubric's keys, in range; and the
``response_format`` that asks an endpoint for exactly that object (a request, not a trust: a reply
sent under it is parsed and validated just the same)."""

from __future__ import annotations

import json
import re
from typing import Any

from tunesmith.config.schema import Rubric

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
REASON_MAX_CHARS = 300  # a bound on the free-text field, so a constrained reply always closes its JSON
_WINNERS = {"1": "1", "2": "2", "tie": "tie", "reply 1": "1", "reply 2": "2", "draw": "tie"}


class VerdictError(ValueError):
    """The judge's reply is not a usable verdict (the message says why, in one line)."""


def extract_object(text: str) -> dict[str, Any]:
    """The JSON object in ``text``: the whole reply, a fenced block, or the outermost ``{...}``."""
    candidates = [text.strip()]
    fenced = _FENCE.search(text)
    if fenced:
        candidates.append(fenced.group(1).strip())
    if "{" in text and "}" in text:
        candidates.append(text[text.index("{") : text.rindex("}") + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            return value
    raise VerdictError("the reply holds no JSON object")


def _score(value: Any, key: str, low: int, high: int) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise VerdictError(f"{key!r} must be an integer from {low} to {high} (got {value!r})")
    if not low <= value <= high:
        raise VerdictError(f"{key!r} must be from {low} to {high} (got {value})")
    return value


def _flag(value: Any, key: str) -> bool:
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
        return value.strip().lower() in ("true", "yes")
    if not isinstance(value, bool):
        raise VerdictError(f"{key!r} must be true or false (got {value!r})")
    return value


def parse_rubric(text: str, rubric: Rubric) -> dict[str, Any]:
    """``{"scores": {criterion: int}, "flags": {flag: bool}, "reason": str}`` from the judge's reply;
    every criterion and flag must be present and valid."""
    obj = extract_object(text)
    missing = [k for k in [c.name for c in rubric.criteria] + [f.name for f in rubric.flags] if k not in obj]
    if missing:
        raise VerdictError(f"missing key(s) {', '.join(missing)}")
    scores = {c.name: _score(obj[c.name], c.name, *c.scale) for c in rubric.criteria}
    flags = {f.name: _flag(obj[f.name], f.name) for f in rubric.flags}
    return {"scores": scores, "flags": flags, "reason": str(obj.get("reason", ""))[:500]}


def parse_pairwise(text: str) -> str:
    """``"1"``, ``"2"`` or ``"tie"`` from the judge's ``{"winner": ...}`` reply."""
    obj = extract_object(text)
    if "winner" not in obj:
        raise VerdictError("missing key 'winner'")
    winner = _WINNERS.get(str(obj["winner"]).strip().strip('"').lower())
    if winner is None:
        raise VerdictError(f"'winner' must be \"1\", \"2\" or \"tie\" (got {obj['winner']!r})")
    return winner


def _response_format(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    """OpenAI ``response_format`` for one object with exactly ``properties`` (all required, in this
    order, nothing else). ``strict`` is left unset: ``maxLength`` is outside OpenAI's strict subset,
    and engines that decode with a grammar (tunesmith serve, vLLM, llama.cpp) enforce the whole schema."""
    schema = {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def rubric_format(rubric: Rubric) -> dict[str, Any]:
    """The ``response_format`` of a rubric verdict: each criterion one of the integers of its scale,
    each flag a boolean, then ``reason`` (a string of at most ``REASON_MAX_CHARS``)."""
    properties: dict[str, Any] = {}
    for c in rubric.criteria:
        properties[c.name] = {"type": "integer", "enum": list(range(c.scale[0], c.scale[1] + 1))}
    for f in rubric.flags:
        properties[f.name] = {"type": "boolean"}
    properties.setdefault("reason", {"type": "string", "maxLength": REASON_MAX_CHARS})
    return _response_format("rubric_verdict", properties)


def pairwise_format() -> dict[str, Any]:
    """The ``response_format`` of a pairwise verdict: ``winner`` "1", "2" or "tie", then ``reason``."""
    return _response_format("pairwise_verdict", {"winner": {"type": "string", "enum": ["1", "2", "tie"]},
                                                 "reason": {"type": "string", "maxLength": REASON_MAX_CHARS}})
