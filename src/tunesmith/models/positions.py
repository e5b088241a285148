"""How many positions a model can attend over, read from its transformers config the way vLLM reads it.

A config states its trained positions under one of several keys (``max_position_embeddings`` for most,
``n_positions`` for GPT-2 ...). RoPE scaling extends them: ``linear``, ``dynamic`` and ``yarn`` scale the
stated (for yarn: the original) positions by their factor; ``llama3`` and ``longrope`` configs already state
the extended length. ``train`` (the longest ``sequence_len`` it allows) and ``serve`` (``--max-model-len``)
both read it here, so a model trained with ``rope_scaling`` is served over the context it was trained for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# where a transformers config states the positions the model was trained on (the keys vLLM reads)
POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "max_sequence_length",
                 "max_seq_length", "seq_len")
# RoPE types whose factor multiplies the stated positions (the others state the extended length already)
SCALED_BY_FACTOR = ("linear", "dynamic", "yarn")


@dataclass(frozen=True)
class Positions:
    key: str  # the config key that states them
    stated: int  # its value
    rope_type: str  # "default" without scaling
    factor: float  # 1.0 without scaling

    @property
    def usable(self) -> int:
        """The positions the model attends over, its RoPE scaling included."""
        return int(self.stated * self.factor) if self.rope_type in SCALED_BY_FACTOR else self.stated

    def describe(self) -> str:
        if self.usable == self.stated:
            return f"{self.key} ({self.stated})"
        return f"{self.key} {self.stated} x {self.rope_type} RoPE factor {self.factor:g} ({self.usable})"


def rope_of(model_config: Any) -> tuple[str, float, dict[str, Any]]:
    """(type, factor, parameters) of the config's RoPE scaling; ("default", 1.0, ...) without one."""
    params = dict(getattr(model_config, "rope_parameters", None) or getattr(model_config, "rope_scaling", None) or {})
    kind = str(params.get("rope_type") or params.get("type") or "default")
    return kind, float(params.get("factor") or 1.0), params


def positions(model_config: Any) -> Positions | None:
    """The config's positions, or None when it states none."""
    found = next(((key, value) for key in POSITION_KEYS
                  if isinstance(value := getattr(model_config, key, None), int) and value > 0), None)
    if found is None:
        return None
    kind, factor, params = rope_of(model_config)
    key, stated = found
    original = params.get("original_max_position_embeddings")
    if kind == "yarn" and isinstance(original, int) and original > 0:
        key, stated = "original_max_position_embeddings", original
    return Positions(key, stated, kind, factor)
