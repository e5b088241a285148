"""The adapter table (``adapters.yaml``): how each ``adapter:`` value is built and what it trains.
Every stage asks this table instead of comparing adapter names."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from tunesmith.config.yaml_load import load_table
from tunesmith.errors import did_you_mean


@dataclass(frozen=True)
class AdapterSpec:
    """One row of ``adapters.yaml``."""

    name: str
    summary: str
    peft: str
    dora: bool = False
    base: str = "fp32"
    low_rank: bool = False
    virtual_tokens: str = "none"
    checkpointing: bool = False
    bf16_frozen_weights: bool = False

    @property
    def full(self) -> bool:
        """Full fine-tuning: no adapter, every parameter trained."""
        return self.peft == "none"


@cache
def adapters() -> dict[str, AdapterSpec]:
    text = resources.files("tunesmith.config").joinpath("adapters.yaml").read_text("utf-8")
    return {str(name): AdapterSpec(name=str(name), **row) for name, row in load_table(text).items()}


def gradient_checkpointing(config: Any, adapter: str | None = None) -> bool:
    """Gradient checkpointing as ``train`` runs it: the config's setting, else the default of the
    adapter's row (on for QLoRA); ``adapter`` in place of the config's (the planner's candidates)."""
    if config.gradient_checkpointing is not None:
        return bool(config.gradient_checkpointing)
    return adapter_spec(adapter or config.adapter).checkpointing


def adapter_spec(name: str) -> AdapterSpec:
    """The table row of ``name`` (a validated config's adapter always has one)."""
    spec = adapters().get(name)
    if spec is None:
        names = list(adapters())
        raise ValueError(f"adapter: must be one of {', '.join(names)} (got {name!r}){did_you_mean(name, names)}")
    return spec
