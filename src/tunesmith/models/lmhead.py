"""Facts about a causal LM's head that both `train` (its fused loss, ``train/lmloss.py``) and `plan` (which
predicts train's choices from config.json alone, ``plan/speedups.py``) read: one definition for both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# model config keys whose head is more than a linear layer (soft-capping, scaling): the fused loss does not apply
HEAD_EXTRAS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")
# tokens per chunk of the fused LM head + cross-entropy
FUSED_LOSS_CHUNK = 1024


def head_extra(value_of: Callable[[str], Any]) -> str | None:
    """The first of ``HEAD_EXTRAS`` that ``value_of`` (a config's getattr, a config.json's ``get``) sets to
    something other than a no-op, else None."""
    return next((name for name in HEAD_EXTRAS if value_of(name) not in (None, 1, 1.0, 0, 0.0)), None)
