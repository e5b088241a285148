"""Method and adapter recommendation from the data (kind, size) and the device's memory.

Rules are data (``recommend.yaml``); the memory check is the plan's own estimate, and the
hyperparameters are what ``train`` would resolve (``config/defaults.yaml``) for the choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from tunesmith.config import Config
from tunesmith.plan.adapters import trainable
from tunesmith.plan.device import Device
from tunesmith.plan.memory import GIB, estimate
from tunesmith.plan.shapes import ModelShape
from tunesmith.plan.tokens import DataStats
from tunesmith.config.yaml_load import load_table


@cache
def rules() -> dict[str, Any]:
    return load_table(resources.files("tunesmith.plan").joinpath("recommend.yaml").read_text("utf-8"))


@dataclass
class Recommendation:
    method: str
    adapter: str
    gradient_checkpointing: bool
    estimate_gib: float | None
    reasons: list[str]
    hyperparameters: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "adapter": self.adapter, "gradient_checkpointing": self.gradient_checkpointing,
                "estimate_gib": None if self.estimate_gib is None else round(self.estimate_gib, 3),
                "reasons": self.reasons, "hyperparameters": self.hyperparameters}


def size_rule(kind: str, rows: int, tokens: int) -> dict[str, Any]:
    """The first size rule whose limit the data is below (rows; tokens for raw text)."""
    by, value = ("tokens", tokens) if kind == "text" else ("rows", rows)
    return next(r for r in rules()["size"][by] if r["max"] is None or value < r["max"])


def recommend(config: Config, shape: ModelShape, stats: DataStats, device: Device, options: Any) -> Recommendation:
    from tunesmith.config.defaults import resolve

    table = rules()
    task = table["method"][stats.kind]
    size = size_rule(stats.kind, stats.rows, stats.tokens)
    reasons = [task["reason"], size["reason"]]
    choice = _first_fit(config, shape, stats, device, options, size["adapter"])
    adapter, checkpointing, peak = choice
    if device.memory_gib is not None:
        fmt = table["fit_reason"] if adapter else table["no_fit_reason"]
        reasons.append(fmt.format(params=_billions(shape.total_params), memory=device.memory_gib, device=device.name,
                                  adapter=_adapter_name(adapter or "qlora", checkpointing), estimate=peak))
    adapter = adapter or "qlora"
    chosen = config.model_copy(update={"adapter": adapter, "method": task["method"]})
    resolved = resolve(chosen, stats.rows)
    hyper = {k: {"value": resolved.values[k], "source": resolved.sources[k]} for k in resolved.values}
    return Recommendation(task["method"], adapter, checkpointing, peak, reasons, hyper)


def _first_fit(config: Config, shape: ModelShape, stats: DataStats, device: Device, options: Any,
               preferred: str) -> tuple[str | None, bool, float | None]:
    """(adapter, gradient checkpointing, GiB) of the first candidate that fits; adapter None when none does."""
    fallback = rules()["fallback"]
    order = fallback[fallback.index(preferred):] if preferred in fallback else [preferred, *fallback]
    peak = None
    for adapter in order:
        for forced in (None, True):
            peak, checkpointing = _peak(config, shape, stats, device, options, adapter, forced)
            if device.memory_gib is None or peak <= device.memory_gib:
                return adapter, checkpointing, peak
    return None, True, peak


def _peak(config: Config, shape: ModelShape, stats: DataStats, device: Device, options: Any, adapter: str,
          checkpointing: bool | None) -> tuple[float, bool]:
    """(peak GiB, whether the run checkpoints) of ``adapter`` with ``checkpointing`` (None: as train would decide)."""
    from tunesmith.plan.run import adapter_settings, setup_for
    from tunesmith.config.defaults import resolve

    candidate = config.model_copy(update={"adapter": adapter})
    resolved = resolve(candidate, stats.rows).values
    setup = setup_for(candidate, device, stats, resolved, options, adapter=adapter, checkpointing=checkpointing,
                      shape=shape)
    peak = estimate(shape, trainable(shape, adapter_settings(candidate, resolved, adapter)), setup).peak_bytes / GIB
    return peak, setup.gradient_checkpointing


def fitting_alternative(config: Config, shape: ModelShape, stats: DataStats, device: Device) -> str:
    """'QLoRA with gradient checkpointing would fit (~9.1 GiB)', or what is left when nothing does (for
    train's refusal). The name says the checkpointing the estimate assumed: the candidate's own default
    (QLoRA's is on) unless it had to be turned on."""
    from tunesmith.plan.run import PlanOptions

    peak = None
    for adapter in ("lora", "qlora"):
        for checkpointing in (None, True):
            if adapter == config.adapter and checkpointing is None:
                continue
            peak, checkpoints = _peak(config, shape, stats, device, PlanOptions(), adapter, checkpointing)
            if device.memory_gib is not None and peak <= device.memory_gib:
                return f"{_adapter_name(adapter, checkpoints)} would fit (~{peak:.1f} GiB)"
    return (f"not even QLoRA with gradient checkpointing fits (~{peak:.1f} GiB): a larger device, more devices "
            "with hardware.sharding: zero3, or a smaller model")


def _adapter_name(adapter: str, checkpointing: bool) -> str:
    names = {"none": "full fine-tuning", "lora": "LoRA", "qlora": "QLoRA", "dora": "DoRA"}
    return names.get(adapter, adapter) + (" with gradient checkpointing" if checkpointing else "")


def _billions(params: int) -> str:
    return f"{params / 1e9:.1f}B" if params >= 1e8 else f"{params / 1e6:.1f}M"
