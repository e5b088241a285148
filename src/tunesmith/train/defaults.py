"""Resolve the training values a config leaves open, recording where each came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

from tunesmith.config import Config


@dataclass(frozen=True)
class Resolved:
    """The effective training hyper-parameters and the source of each."""

    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def lines(self) -> list[str]:
        return [f"{k} = {self.values[k]}  ({self.sources[k]})" for k in self.values]


@cache
def _table() -> dict[str, Any]:
    return yaml.safe_load(resources.files("tunesmith.train").joinpath("defaults.yaml").read_text("utf-8"))


def resolve(config: Config, train_rows: int) -> Resolved:
    """Fill every ``None`` training value from the seed's defaults for this method/size."""
    t = _table()
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def pick(name: str, configured: Any, default: dict[str, Any]) -> None:
        if configured is not None:
            values[name], sources[name] = configured, "config"
        else:
            values[name], sources[name] = default["value"], default["source"]

    lr_key = config.method if config.method in ("dpo", "cpt") else config.adapter
    pick("learning_rate", config.learning_rate, t["learning_rate"][lr_key])
    small = train_rows < t["warmup_ratio"]["small_rows"] or config.method == "dpo"
    pick("warmup_ratio", config.warmup_ratio, t["warmup_ratio"]["small_or_dpo" if small else "default"])
    pick("max_grad_norm", config.max_grad_norm, t["max_grad_norm"]["dpo" if config.method == "dpo" else "default"])
    pick("num_epochs", config.num_epochs, t["num_epochs"][config.method])
    if config.adapter in ("lora", "dora", "qlora"):
        pick("lora_r", config.lora_r, t["lora_r"])
        factor = t["lora_alpha_factor"]
        alpha = {"value": factor["value"] * values["lora_r"], "source": factor["source"]}
        pick("lora_alpha", config.lora_alpha, alpha)
        drop = t["lora_dropout"]
        pick("lora_dropout", config.lora_dropout, drop["small" if train_rows < drop["small_rows"] else "default"])
    return Resolved(values, sources)
