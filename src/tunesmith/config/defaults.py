"""Resolve the training values a config leaves open, recording where each came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from tunesmith.config import Config
from tunesmith.config.adapters import adapter_spec
from tunesmith.config.methods import method_spec
from tunesmith.config.yaml_load import load_table


@dataclass(frozen=True)
class Resolved:
    """The effective training hyper-parameters and the source of each."""

    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def lines(self) -> list[str]:
        return [f"{k} = {self.values[k]}  ({self.sources[k]})" for k in self.values]

    @property
    def disable_dropout(self) -> bool:
        """TRL's ``disable_dropout`` for the preference and distillation trainers (theirs defaults to True, which
        silently turned a configured LoRA dropout off): dropout stays on exactly when ``lora_dropout`` > 0."""
        return not self.values.get("lora_dropout")


@cache
def _table() -> dict[str, Any]:
    return load_table(resources.files("tunesmith.config").joinpath("defaults.yaml").read_text("utf-8"))


def resolve(config: Config, train_rows: int) -> Resolved:
    """Fill every ``None`` training value from the seed's defaults for this method/size.

    A value the config file set says "config", or where it came from when it was translated
    from another tool's key or is that tool's default (``config.origin``).
    """
    t = _table()
    spec = method_spec(config.method)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def pick(name: str, configured: Any, default: dict[str, Any]) -> None:
        if configured is not None:
            values[name], sources[name] = configured, config.origin(name) or "config"
        else:
            values[name], sources[name] = default["value"], default["source"]

    pick("learning_rate", config.learning_rate, spec.defaults.get("learning_rate") or t["learning_rate"][config.adapter])
    if config.warmup_steps is not None:
        values["warmup_steps"], sources["warmup_steps"] = config.warmup_steps, config.origin("warmup_steps") or "config"
    else:
        small = train_rows < t["warmup_ratio"]["small_rows"] or spec.preference
        pick("warmup_ratio", config.warmup_ratio, t["warmup_ratio"]["small_or_preference" if small else "default"])
    pick("max_grad_norm", config.max_grad_norm, t["max_grad_norm"]["preference" if spec.preference else "default"])
    pick("num_epochs", config.num_epochs, spec.defaults["num_epochs"])
    if "beta" in spec.defaults:
        pick("beta", config.beta, spec.defaults["beta"])
    _per_epoch(config, train_rows, values, sources)
    if adapter_spec(config.adapter).low_rank:
        pick("lora_r", config.lora_r, t["lora_r"])
        factor = t["lora_alpha_factor"]
        alpha = {"value": factor["value"] * values["lora_r"], "source": factor["source"]}
        pick("lora_alpha", config.lora_alpha, alpha)
        drop = t["lora_dropout"]
        pick("lora_dropout", config.lora_dropout,
             spec.defaults.get("lora_dropout") or drop["small" if train_rows < drop["small_rows"] else "default"])
    return Resolved(values, sources)


def _per_epoch(config: Config, train_rows: int, values: dict[str, Any], sources: dict[str, str]) -> None:
    """Axolotl ``evals_per_epoch`` / ``saves_per_epoch`` as step counts (saves on an eval step)."""
    per_epoch = max(1, -(-train_rows // (config.micro_batch_size * config.gradient_accumulation_steps)))
    eval_steps = None
    if config.evals_per_epoch:
        eval_steps = max(1, per_epoch // config.evals_per_epoch)
        values["eval_steps"] = eval_steps
        sources["eval_steps"] = f"evals_per_epoch: {config.evals_per_epoch} of {per_epoch} steps per epoch"
    if config.saves_per_epoch:
        every = max(1, per_epoch // config.saves_per_epoch)
        step = eval_steps or config.eval_steps
        if step:  # the best checkpoint can only be kept when saves fall on evaluation steps
            every = step * max(1, round(every / step))
        values["save_steps"] = every
        sources["save_steps"] = f"saves_per_epoch: {config.saves_per_epoch} of {per_epoch} steps per epoch"
