"""Which training speed-ups a run uses, why, and the Trainer that applies the loss one.

Each speed-up is exact (tests/test_train_fast.py compares loss and gradients with the plain path)
and is used where it applies unless the config turns it off:

* ``padding_free``: a micro batch's samples go in one row with no padding, each attending only to
  itself (``tunesmith.train.varlen``); same samples per step, same loss (DPO: every prompt+chosen
  and prompt+rejected sequence of the micro batch, policy and reference passes alike);
* ``fused_loss``: the LM head and cross-entropy run only at trained positions, chunked, gradients
  computed in the same pass (``tunesmith.train.lmloss``); for DPO, the chosen/rejected log-probs
  at completion positions only (``tunesmith.train.dpo``, TRL's loss types it covers);
* ``bf16_frozen_weights``: with bf16 autocast on hardware with fast bf16 (AMX / CUDA), LoRA's
  frozen base linear weights are stored in bf16 instead of being re-cast every step (adapter
  weights and optimizer stay fp32); autocast would cast them to the same bf16 values anyway.

The choice and the reasons are recorded in run.json (``optimisations``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from transformers import Trainer

from tunesmith.config import Config
from tunesmith.config.adapters import adapter_spec
from tunesmith.models.lmhead import FUSED_LOSS_CHUNK
from tunesmith.config.methods import method_spec
from tunesmith.errors import ConfigError
from tunesmith.train import lmloss, varlen
from tunesmith.models.precision import Precision, fast_bf16

_NO_WRAPPER_FORWARD = ("prompt", "prefix")  # PEFT methods that change the inputs in the wrapper's forward


@dataclass(frozen=True)
class Speedups:
    padding_free: bool = False
    fused_loss: bool = False
    bf16_frozen_weights: bool = False
    fused_loss_chunk: int = FUSED_LOSS_CHUNK
    why: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return asdict(self)


def _decide(name: str, setting: Any, blocker: str | None, why: dict[str, str]) -> bool:
    if setting is False:
        why[name] = f"{name}: false in config"
        return False
    if blocker:
        if setting is True:
            raise ConfigError(f"{name}: true is not possible for this run: {blocker}")
        why[name] = f"off: {blocker}"
        return False
    why[name] = "on"
    return True


def choose(config: Config, base: Any, model: Any, precision: Precision) -> Speedups:
    """Decide every speed-up for ``model`` (the adapter-wrapped ``base``) under ``config`` (rows
    with per-message loss weights keep the fused loss: it weighs each target)."""
    why: dict[str, str] = {}
    kind = method_spec(config.method).trainer
    sft, dpo = kind == "sft", kind == "dpo"  # sft: transformers' Trainer (sft, cpt); dpo: TRL's, fast loss
    loss_block = lmloss.supports_fused_loss(model) if sft or dpo else "only SFT/cpt and DPO"
    if dpo and not loss_block:
        from tunesmith.train import dpo as fast_dpo

        loss_block = fast_dpo.unsupported([config.loss_type], model)
    fused = _decide("fused_loss", config.fused_loss, loss_block, why)
    wrapper = config.adapter in _NO_WRAPPER_FORWARD
    free_block = ("only SFT/cpt and DPO batches" if not (sft or dpo) else "prompt/prefix tuning" if wrapper
                  else "DPO's padding-free batches need fused_loss" if dpo and not fused else varlen.unsupported(base))
    padding_free = _decide("padding_free", config.padding_free, free_block, why)
    bf16_block = None
    if not precision.bf16:
        bf16_block = "not training in bf16"
    elif not sft:
        bf16_block = "only SFT/cpt (TRL's trainers are left as they are)"
    elif not adapter_spec(config.adapter).bf16_frozen_weights:
        bf16_block = "only for LoRA (DoRA's norm and full fine-tuning need fp32 weights)"
    elif not fast_bf16():
        bf16_block = "no fast bf16 on this hardware"
    bf16 = _decide("bf16_frozen_weights", "auto", bf16_block, why)
    return Speedups(padding_free, fused, bf16, why=why)


def prepare(base: Any, model: Any, speedups: Speedups) -> None:
    """Apply the model-side speed-ups (attention implementation, frozen weight dtype) in place."""
    if speedups.padding_free:
        base.set_attn_implementation(varlen.register())
    if speedups.bf16_frozen_weights:
        tied = model.get_input_embeddings().weight  # a head tied to the embedding stays fp32
        for module in model.modules():
            if type(module) is torch.nn.Linear and not module.weight.requires_grad and module.weight is not tied:
                module.to(torch.bfloat16)


def restore(model: Any, speedups: Speedups) -> None:
    """After training: frozen weights back to fp32 so the in-memory model runs without autocast."""
    if speedups.bf16_frozen_weights:
        for module in model.modules():
            if type(module) is torch.nn.Linear and module.weight.dtype == torch.bfloat16:
                module.to(torch.float32)


class WeightedLossTrainer(Trainer):
    """transformers' Trainer whose loss weighs each trained token by its message's ``loss_weight``
    (``lmloss.weighted_loss``), in training and evaluation; batches without weights take the plain path."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[no-untyped-def]
        if "loss_weights" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        # divided as the model's own loss would be: by the accumulated token count when the Trainer passes it
        # to the model (then it does not divide by the accumulation steps again), else per micro batch
        count = num_items_in_batch if self.model_accepts_loss_kwargs else None
        loss, outputs = lmloss.weighted_loss(model, inputs, count)
        if self.args.average_tokens_across_devices and count is not None:
            loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss scales the model's own loss
        return (loss, outputs) if return_outputs else loss


class FastLossTrainer(WeightedLossTrainer):
    """transformers' Trainer whose loss is ``lmloss.fused_loss`` (weighted when the rows carry loss
    weights), in training and for the validation loss; an evaluation that asks for logits takes the
    plain (or weighted) path."""

    fused_loss_chunk = FUSED_LOSS_CHUNK
    trunk_cache: Any = None  # a train.trunk.TrunkCache: layers below the adapter's first read from it

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[no-untyped-def]
        # evaluation, and a model wrapped for distributed training (whose forward syncs gradients), take the plain
        # (or weighted) path
        if return_outputs or not model.training or "labels" not in inputs or self.accelerator.num_processes > 1:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        return self._fused(model, inputs, num_items_in_batch)

    def _fused(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any) -> torch.Tensor:
        # the decoder is called directly, not through the model's forward that accelerate wraps in its
        # mixed-precision autocast: enter that autocast here (bf16/fp16 runs compute as they would)
        with self.accelerator.autocast():
            if self.trunk_cache is not None:
                return self.trunk_cache.loss(model, inputs, num_items_in_batch, self.fused_loss_chunk)
            return lmloss.fused_loss(model, inputs, num_items_in_batch, self.fused_loss_chunk)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):  # type: ignore[no-untyped-def]
        """The validation loss through the training's fused path (the trunk cache's too): no
        vocabulary-sized logits at prompt positions, equal to the plain loss up to float rounding
        (tests/test_train_fast.py). Logits, when asked for, take the plain path."""
        if not prediction_loss_only or "labels" not in inputs or self.accelerator.num_processes > 1:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        inputs = self._prepare_inputs(inputs)
        count = self._get_num_items_in_batch([inputs], self.args.device)  # as the plain step divides
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self._fused(model, inputs, count)
        return loss.detach().mean(), None, None
