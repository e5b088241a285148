"""Trainable parameters per adapter, exactly as PEFT will create them, from the model's shapes.

One function per adapter kind in ``ADAPTERS`` (the registry); each returns the trainable count
and, for ``modules_to_save``, the extra full copies PEFT keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tunesmith.config.adapters import adapter_spec
from tunesmith.plan.shapes import Linear, ModelShape, PlanError


@dataclass(frozen=True)
class Trainable:
    """Trainable parameters, the frozen base parameters, and what PEFT copies for modules_to_save."""

    trainable: int
    frozen: int
    copies: int  # parameters PEFT duplicates (modules_to_save): trainable, stored besides the frozen original
    modules: tuple[Linear, ...] = ()  # the linear modules an adapter wraps (one entry per layer instance)
    note: str = ""


@dataclass(frozen=True)
class AdapterSettings:
    """The adapter values the count depends on (resolved defaults filled in)."""

    adapter: str
    lora_r: int | None
    target_modules: list[str] | str
    modules_to_save: list[str] | None
    num_virtual_tokens: int


def _special(shape: ModelShape) -> dict[str, Linear]:
    """Modules outside the decoder layers that PEFT can target or save by name."""
    return {
        "lm_head": Linear("lm_head", shape.hidden, shape.vocab, False),
        "embed_tokens": Linear("embed_tokens", shape.vocab, shape.hidden, False),
    }


def _targets(shape: ModelShape, names: list[str] | str, key: str) -> list[Linear]:
    """Every module instance the names match (PEFT matches a name or a dotted suffix)."""
    if names == "all-linear":
        return [m for _ in range(shape.layers) for m in shape.linear]
    found: list[Linear] = []
    for name in names:
        short = name.rsplit(".", 1)[-1]
        layer = [m for m in shape.linear if m.name == short]
        if layer:
            found += layer * shape.layers
        elif short in _special(shape):
            found.append(_special(shape)[short])
        else:
            known = [m.name for m in shape.linear] + list(_special(shape))
            raise PlanError(f"{key}: {name!r} is not a module of {shape.model_type} (modules: {', '.join(known)})")
    return found


def _saved(shape: ModelShape, settings: AdapterSettings) -> int:
    if not settings.modules_to_save:
        return 0
    return sum(m.in_features * m.out_features for m in _targets(shape, settings.modules_to_save, "modules_to_save"))


def lora(shape: ModelShape, s: AdapterSettings) -> Trainable:
    assert s.lora_r is not None
    modules = _targets(shape, s.target_modules, "lora_target_modules")
    count = 0
    for m in modules:
        count += s.lora_r * (m.in_features + m.out_features)
        if adapter_spec(s.adapter).dora:
            count += m.out_features  # the magnitude vector
    saved = _saved(shape, s)
    return Trainable(count + saved, shape.total_params, saved, tuple(modules))


def ia3(shape: ModelShape, s: AdapterSettings) -> Trainable:
    if not shape.ia3_target:
        raise PlanError(f"adapter: ia3 has no default target modules for model_type {shape.model_type!r} in PEFT")
    modules = [m for _ in range(shape.layers) for m in shape.linear if m.name in shape.ia3_target]
    count = sum(m.in_features if m.name in shape.ia3_feedforward else m.out_features for m in modules)
    saved = _saved(shape, s)
    return Trainable(count + saved, shape.total_params, saved, tuple(modules))


def prompt(shape: ModelShape, s: AdapterSettings) -> Trainable:
    return Trainable(s.num_virtual_tokens * shape.hidden, shape.total_params, 0)


def prefix(shape: ModelShape, s: AdapterSettings) -> Trainable:
    # PEFT sizes the prefix for the key/value heads (grouped-query attention, peft#1901)
    per_layer = 2 * shape.kv_heads * shape.head_dim
    return Trainable(s.num_virtual_tokens * shape.layers * per_layer, shape.total_params, 0)


def full(shape: ModelShape, s: AdapterSettings) -> Trainable:
    return Trainable(shape.total_params, 0, 0)


ADAPTERS: dict[str, Callable[[ModelShape, AdapterSettings], Trainable]] = {
    "lora": lora,
    "dora": lora,
    "qlora": lora,
    "ia3": ia3,
    "prompt": prompt,
    "prefix": prefix,
    "none": full,
}


def trainable(shape: ModelShape, settings: AdapterSettings) -> Trainable:
    return ADAPTERS[settings.adapter](shape, settings)
