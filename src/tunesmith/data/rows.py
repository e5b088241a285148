"""What every format parser shares: the parse context and typed access to row fields.

A parser raises :class:`FieldError` naming the offending field as the user wrote it
(``messages[2].role``, ``output``); ingestion turns it into a ``RowError`` with file and line.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from tunesmith.errors import did_you_mean
from tunesmith.config.methods import methods
from tunesmith.config.schema import DatasetSpec
from tunesmith.data import rowcheck
from tunesmith.data.records import ROLES

FUNCTION_CALL = "function_call"
"""Pseudo-role of a sharegpt ``function_call`` turn: an assistant turn holding tool calls."""

ROLE_ALIASES: dict[str, str] = {
    "human": "user",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "function_call": FUNCTION_CALL,
    "observation": "tool",
    "function": "tool",
    "ipython": "tool",
    "developer": "system",
}


class FieldError(Exception):
    """A row is invalid; ``field`` names the offending field, ``message`` what is wrong."""

    def __init__(self, field: str | None, message: str):
        super().__init__(f"{field} {message}" if field else message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ParseContext:
    """Per-dataset settings a parser needs: the spec, the training method, the role table."""

    spec: DatasetSpec
    method: str = "sft"
    roles: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, spec: DatasetSpec, method: str = "sft") -> ParseContext:
        roles = {r: r for r in ROLES}
        roles.update(ROLE_ALIASES)
        roles.update({
            spec.user_tag: "user",
            spec.assistant_tag: "assistant",
            spec.system_tag: "system",
            spec.function_tag: FUNCTION_CALL,
            spec.observation_tag: "tool",
        })
        for role, names in (spec.roles or {}).items():
            roles.update({name: role for name in names})
        return cls(spec=spec, method=method, roles=roles)

    @property
    def sft(self) -> bool:
        """Rows of methods that train on conversations (sft, distill) must end with an assistant turn."""
        spec = methods().get(self.method)
        return spec is not None and spec.records == "sft"


def type_name(value: Any) -> str:
    """The JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def got(value: Any) -> str:
    """``(got number 3)`` — the offending value, shortened."""
    text = repr(value)
    return f"(got {type_name(value)} {text[:60] + '...' if len(text) > 60 else text})"


def column(row: dict[str, Any], mapped: str | None, *defaults: str) -> str:
    """The column to read: the user's mapping, else the first default present in the row."""
    if mapped:
        return mapped
    return next((d for d in defaults if d in row), defaults[0])


def present(row: dict[str, Any], key: str) -> bool:
    """True when the row has a non-empty value under ``key`` ("" and null count as absent)."""
    value = row.get(key)
    return value is not None and value != ""


def missing(row: dict[str, Any], key: str) -> FieldError:
    """The error for a missing required field, listing the row's keys (did-you-mean)."""
    keys = ", ".join(sorted(map(str, row))) or "no fields"
    hint = did_you_mean(key, [str(k) for k in row])
    return FieldError(key, f"is missing (the row has: {keys}){hint}")


def require(row: dict[str, Any], key: str) -> Any:
    """The value under ``key``; a FieldError when absent or null."""
    value = row.get(key)
    if value is None:
        raise missing(row, key)
    return value


def text(row: dict[str, Any], key: str, required: bool = True) -> str:
    """A string field; required ones must be present and non-blank, optional ones default to ""."""
    value = row.get(key)
    if value is None:
        if required:
            raise missing(row, key)
        return ""
    if not isinstance(value, str):
        raise FieldError(key, f"must be a string {got(value)}")
    if required and not value.strip():
        raise FieldError(key, "is empty")
    return value


def structured(value: Any, where: str) -> Any:
    """Parse a structured value given as a JSON string (CSV cells, glaive ``tools``)."""
    if not isinstance(value, str):
        return value
    stripped = value.strip()
    if not stripped or stripped[0] not in "[{":
        return value
    try:
        return rowcheck.loads(stripped)
    except json.JSONDecodeError as exc:
        raise FieldError(where, f"is not valid JSON ({exc.msg} at column {exc.colno})") from None
    except rowcheck.RowProblem as exc:
        raise FieldError(f"{where}.{exc.field}" if exc.field else where, exc.message) from None


def weight(value: Any, where: str) -> float:
    """A loss weight: a finite number >= 0 (JSON readers accept NaN and Infinity, which would poison the loss)."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # a CSV cell
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise FieldError(where, f"must be a finite number >= 0 {got(value)}")
    return float(value)
