"""Allowed values of keys that transformers / TRL interpret, read from the installed sources.

``lr_scheduler``, ``optimizer``, ``report_to`` and ``loss_type`` are plain strings in the
schema, but any typo used to pass and fail inside transformers after data loading. The
installed library is the source of truth: its enum classes / tables are read with ``ast``
from the package's files (no import: importing transformers takes seconds, and a config
error must be reported in well under one).
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class Source:
    """Where the allowed values of one key live: a file of an installed package and how to read it."""

    package: str
    file: str
    kind: str  # one of EXTRACTORS
    name: str
    extra: tuple[str, ...] = ()  # values the key also accepts (tunesmith's own, e.g. "none")
    unusable: tuple[tuple[str, str], ...] = ()  # values the library lists that need what tunesmith never passes


_NO_KWARGS = ", which tunesmith does not take: use cosine, linear or constant_with_warmup"

SOURCES: dict[str, Source] = {
    "lr_scheduler": Source("transformers", "trainer_utils.py", "enum", "SchedulerType", unusable=(
        ("cosine_with_min_lr", f"it needs lr_scheduler_kwargs (min_lr or min_lr_rate){_NO_KWARGS}"),
        ("cosine_warmup_with_min_lr", f"it needs lr_scheduler_kwargs (min_lr or min_lr_rate){_NO_KWARGS}"),
        ("warmup_stable_decay", f"it needs lr_scheduler_kwargs (num_decay_steps){_NO_KWARGS}"),
        ("reduce_lr_on_plateau", f"it steps on an evaluation metric, not on training steps{_NO_KWARGS}"),
    )),
    "optimizer": Source("transformers", "training_args.py", "enum", "OptimizerNames"),
    "report_to": Source("transformers", "integrations/integration_utils.py", "dict_keys", "INTEGRATION_TO_CALLBACK",
                        extra=("none",)),
    "loss_type": Source("trl", "trainer/dpo_trainer.py", "compared", "loss_type"),
}


def _enum_values(tree: ast.Module, name: str) -> list[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == name:
            return [
                stmt.value.value for stmt in node.body
                if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
                and isinstance(stmt.value.value, str)
            ]
    return []


def _dict_keys(tree: ast.Module, name: str) -> list[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            if isinstance(node.value, ast.Dict):
                return [k.value for k in node.value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    return []


def _compared(tree: ast.Module, name: str) -> list[str]:
    """String constants a variable called ``name`` is compared with (``if loss_type == "sigmoid"``)."""
    found: list[str] = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and node.left.id == name
                and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq)):
            right = node.comparators[0]
            if isinstance(right, ast.Constant) and isinstance(right.value, str) and right.value not in found:
                found.append(right.value)
    return found


EXTRACTORS: dict[str, Callable[[ast.Module, str], list[str]]] = {
    "enum": _enum_values,
    "dict_keys": _dict_keys,
    "compared": _compared,
}


def _package_dir(package: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def allowed(key: str) -> tuple[str, ...] | None:
    """The values ``key`` accepts per the installed library, or None when that can't be read
    (library not installed, file moved): the library then checks the value itself."""
    source = SOURCES[key]
    folder = _package_dir(source.package)
    if folder is None:
        return None
    try:
        tree = ast.parse((folder / source.file).read_text("utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    unusable = dict(source.unusable)
    values = [v for v in EXTRACTORS[source.kind](tree, source.name) if v not in unusable]
    return (*source.extra, *values) if values else None


def check(key: str, value: str) -> str:
    """``value`` when ``key`` accepts it; else a ValueError listing the choices, with a did-you-mean."""
    from tunesmith.errors import did_you_mean

    source = SOURCES[key]
    why = dict(source.unusable).get(value)
    if why is not None:  # listed by the library, but it would fail inside the trainer after the data loaded
        raise ValueError(f"'{value}' cannot be used: {why}")
    options = allowed(key)
    if options is None or value in options:
        return value
    raise ValueError(
        f"'{value}' is not accepted by the installed {source.package}{did_you_mean(value, list(options))}; "
        f"choices: {', '.join(options)}"
    )
