"""Which of `train`'s memory-relevant speed-ups (train/speed.py) a run will use, from the config alone.

`train` decides them on the loaded model (``speed.choose``); the plan cannot load it, so it applies
the same rules to what config.json and the config say. Each changes the memory estimate:

* ``fused_loss`` (SFT/cpt, one process): the LM head + cross-entropy run over chunks (``models.lmhead.FUSED_LOSS_CHUNK`` tokens) of
  the trained positions: no vocabulary-sized logits for the whole batch;
* ``padding_free``: a micro batch is one unpadded row, each sample attending to itself: no
  materialised attention mask;
* ``frozen_bf16`` (LoRA, bf16 on fast-bf16 hardware): the frozen base linear weights are stored in
  bf16 before the model moves to the device, so autocast keeps no 16-bit copies of them.

DPO and the other TRL trainers are planned on their plain path (an upper bound).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunesmith.config import Config
from tunesmith.config.adapters import adapter_spec
from tunesmith.config.methods import method_spec
from tunesmith.plan.shapes import ModelShape

if TYPE_CHECKING:
    from tunesmith.plan.device import Device



@dataclass(frozen=True)
class Speedups:
    fused_loss: bool = False
    padding_free: bool = False
    frozen_bf16: bool = False


def expected(config: Config, shape: ModelShape, device: Device, adapter: str, gpus: int, mixed: bool) -> Speedups:
    """The speed-ups `train` would choose for this run on ``device`` (``mixed``: 16-bit autocast)."""
    spec = adapter_spec(adapter)
    sft = method_spec(config.method).trainer == "sft"
    head_targets = list(config.modules_to_save or [])
    if isinstance(config.lora_target_modules, list):
        head_targets += config.lora_target_modules
    plain_head = not any(t.rsplit(".", 1)[-1] == "lm_head" for t in head_targets) and not shape.head_extras
    wrapper = spec.virtual_tokens != "none"  # prompt / prefix tuning change the inputs in PEFT's forward
    # FastLossTrainer takes the plain path when more than one process trains
    fused = config.fused_loss is not False and sft and plain_head and not wrapper and gpus == 1
    padding_free = (config.padding_free is not False and sft and not wrapper and not shape.sliding_window
                    and config.attn_implementation in (None, "sdpa", "eager"))
    frozen = mixed and sft and spec.bf16_frozen_weights and _fast_bf16(config, device)
    return Speedups(fused, padding_free, frozen)


def _fast_bf16(config: Config, device: Device) -> bool:
    """bf16 (not fp16) autocast on hardware with fast bf16: a named GPU with bf16, or this CPU with AMX."""
    if config.bf16 is False:
        return False
    if device.kind == "gpu":
        return device.bf16
    from tunesmith.models.precision import choose, fast_bf16

    return choose(config.bf16).bf16 and fast_bf16()
