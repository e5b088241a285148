"""A config as YAML with a comment on every value that was not written natively: translated
from another tool's key, that tool's default, or tunesmith's default (``tunesmith config``,
``tunesmith import``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from tunesmith.config.schema import Config

_NOT_NATIVE = ("source_tool",)


def annotated_yaml(config: Config, *, full: bool) -> str:
    """``full``: every key (tunesmith defaults marked); else only what the file set or the tool defaulted."""
    written = _written(config)
    if full:
        data = config.model_dump(mode="json")
    else:
        data = {k: v for k, v in config.model_dump(mode="json", exclude_unset=True).items() if k not in _NOT_NATIVE}

    def comment(path: str) -> str | None:
        origin = config.origin(path)
        if origin is not None:
            return origin
        top = path.split(".", 1)[0].split("[", 1)[0]
        return None if top in written or "." in path or "[" in path else "tunesmith default"

    return "\n".join(_render(data, comment)) + "\n"


def notes_block(config: Config, source: str) -> str:
    """Every note as a YAML comment: what was applied, defaulted, not applicable, or empty."""
    lines = []
    kinds = (("applied", "translated"), ("defaulted", "defaults of the source tool"),
             ("ignored", "accepted, not applicable here"))
    for kind, title in kinds:
        notes = [n for n in config.notes if n.kind == kind]
        if notes:
            lines.append(f"# {title}:")
            lines += [f"#   {n.render(source)}" for n in notes]
    empty = [n.path for n in config.notes if n.kind == "empty"]
    if empty:
        lines.append(f"# empty in the file (not set, as in the source tool): {', '.join(empty)}")
    return "\n".join(lines) + ("\n" if lines else "")


def _written(config: Config) -> set[str]:
    return set(config.model_fields_set)


def _render(node: dict[str, Any], comment: Callable[[str], str | None], indent: int = 0, prefix: str = "") -> list[str]:
    lines: list[str] = []
    pad = " " * indent
    for key, value in node.items():
        path = f"{prefix}{key}"
        note = comment(path)
        tail = f"  # {note}" if note else ""
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{key}:{tail}")
            lines += _render(value, comment, indent + 2, path + ".")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{pad}{key}:{tail}")
            for i, item in enumerate(value):
                sub = _render(item, comment, indent + 4, f"{path}[{i}].")
                if sub:
                    sub[0] = f"{pad}  - {sub[0].lstrip()}"
                lines += sub
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}{tail}")
    return lines


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000, allow_unicode=True).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text
