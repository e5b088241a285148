"""Translate Axolotl / LLaMA-Factory / TRL key names to tunesmith's canonical keys."""

from __future__ import annotations

from functools import cache
from typing import Any

from tunesmith.config import foreign
from tunesmith.errors import ConfigError


class KeyProblem(ConfigError):
    """A config key that cannot be used as written; ``path`` is where it was written (``datasets[0].tag``)."""

    def __init__(self, path: str, message: str, shown: str | None = None):
        super().__init__(f"{shown or path}: {message}")
        self.path = path
        self.message = message


@cache
def alias_table() -> dict[str, dict[str, dict[str, Any]]]:
    """Other tools' plain renames (``foreign/*.yaml``), by level: ``{name: {to, from, values}}``."""
    return {"top": foreign.all_renames("top"), "dataset": foreign.all_renames("dataset")}


def canonical_key(key: str, level: str = "top") -> str:
    spec = alias_table()[level].get(key)
    return spec["to"] if spec else key


def translate_value(key: str, value: Any, level: str = "top") -> Any:
    spec = alias_table()[level].get(key)
    if spec is None:
        return value
    split = spec.get("split_commas") and isinstance(value, str)
    if split:  # 'q_proj,v_proj' -> a list; one name alone is a list of one unless it is a known value ('all')
        value = [v.strip() for v in value.split(",") if v.strip()]
        if len(value) == 1:
            value = value[0]
    values = spec.get("values")
    if values is not None and not isinstance(value, list) and value in values:
        mapped = values[value]
        if mapped is None:
            raise KeyProblem(key, f"'{value}' ({spec['from']}) is not supported by tunesmith")
        return mapped
    return [value] if split and isinstance(value, str) else value


def canonicalize(raw: dict[str, Any], level: str, where: str = "") -> tuple[dict[str, Any], dict[str, str]]:
    """Rename aliased keys; return the new mapping and canonical -> original key names.

    Raises KeyProblem when one value is set under two names; ``where`` prefixes key paths
    (``datasets[0].``).
    """
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in raw.items():
        key = str(key)
        canon = canonical_key(key, level)
        if canon in out:
            raise KeyProblem(
                f"{where}{key}",
                f"set twice, as '{origin[canon]}' and '{key}' (they are the same setting; keep one)",
                shown=f"{where}{canon}",
            )
        try:
            out[canon] = translate_value(key, value, level)
        except KeyProblem as exc:
            raise KeyProblem(f"{where}{key}", exc.message) from None
        origin[canon] = key
    return out, origin


