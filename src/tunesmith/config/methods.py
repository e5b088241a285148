"""The method table (``methods.yaml``): what each training method reads, how its rows are
tokenized, which trainer runs it and its defaults. Every stage asks this table instead of
comparing method names."""

from __future__ import annotations

from tunesmith.errors import did_you_mean
from tunesmith.config.yaml_load import load_table

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any



@dataclass(frozen=True)
class MethodSpec:
    """One row of ``methods.yaml``."""

    name: str
    summary: str
    records: str
    rows: str
    trainer: str
    model: str
    packing: bool
    preference: bool = False
    reference: bool = False
    teacher: bool = False
    min_micro_batch_size: int = 1
    min_micro_batch_why: str = ""
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    refuses_adapters: dict[str, str] = field(default_factory=dict)  # adapter -> why the trainer cannot use it


@cache
def methods() -> dict[str, MethodSpec]:
    text = resources.files("tunesmith.config").joinpath("methods.yaml").read_text("utf-8")
    return {name: MethodSpec(name=name, **row) for name, row in load_table(text).items()}


def method_spec(name: str) -> MethodSpec:
    """The table row of ``name`` (a validated config's method always has one)."""
    spec = methods().get(name)
    if spec is None:
        raise ValueError(unknown_method(name))
    return spec


def unknown_method(name: str) -> str:
    names = list(methods())
    return f"must be one of {', '.join(names)} (got {name!r}){did_you_mean(name, names)}"


def methods_for_records(kind: str) -> list[str]:
    """The methods that train on records of ``kind``."""
    return [m.name for m in methods().values() if m.records == kind]
