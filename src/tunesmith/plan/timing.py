"""Training time and cost: FLOPs per token x tokens / (devices x peak x MFU).

FLOPs per token processed, N = parameters used in a matrix multiply (the embedding lookup is not
one), A = attention score/value FLOPs of the forward pass (4 x layers x q-width x context: q.k and the
weighted sum of v, 2 FLOPs a multiply-add each, over the ``context`` keys a query attends to):

* forward: 2N + A; the backward pass costs 2N for the gradients of the activations, another 2N
  for the weight gradients when the weights train, and 2A: full fine-tuning 6N + 3A, frozen
  weights (LoRA, QLoRA, IA3, prompt / prefix tuning) 4N + 3A;
* gradient checkpointing recomputes the forward: + (2N + A);
* DPO's reference model runs one more forward on the same tokens: + (2N + A).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunesmith.plan.shapes import ModelShape


@dataclass(frozen=True)
class TimeEstimate:
    flops: float
    tokens: int  # token positions computed over the whole run
    flops_per_token: float
    factor: str  # e.g. "4N + 3A (frozen weights) + 2N + A (gradient checkpointing)"
    mfu: float
    peak_tflops: float
    devices: int
    hours: float
    cost: float | None
    price_per_hour: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"flops": self.flops, "tokens": self.tokens, "flops_per_token": self.flops_per_token,
                "factor": self.factor, "mfu": self.mfu, "peak_tflops": self.peak_tflops, "devices": self.devices,
                "hours": self.hours, "cost": self.cost,
                "price_per_gpu_hour": self.price_per_hour}


def flops_per_token(shape: ModelShape, context: float, full: bool, checkpointing: bool, dpo: bool) -> tuple[float, str]:
    """(FLOPs per token, the formula in words); ``context``: the keys a query attends to on average (causal:
    half the sequence)."""
    n = shape.matmul_params
    a = 4 * shape.layers * shape.heads * shape.head_dim * context  # q.k^T and attn @ v: 2 FLOPs per multiply-add
    forward = 2 * n + a
    total = forward + (4 * n if full else 2 * n) + 2 * a
    words = ["6N + 3A (weights train)" if full else "4N + 3A (frozen weights)"]
    if checkpointing:
        total += forward
        words.append("2N + A (gradient checkpointing)")
    if dpo:
        total += forward
        words.append("2N + A (reference or teacher forward)")
    return total, " + ".join(words)


def estimate_time(shape: ModelShape, tokens: int, context: float, full: bool, checkpointing: bool, dpo: bool,
                  peak_tflops: float, devices: int, mfu: float, price: float | None) -> TimeEstimate:
    per_token, words = flops_per_token(shape, context, full, checkpointing, dpo)
    flops = per_token * tokens
    hours = flops / (devices * peak_tflops * 1e12 * mfu) / 3600
    cost = hours * devices * price if price is not None else None
    return TimeEstimate(flops, tokens, per_token, words, mfu, peak_tflops, devices, hours, cost, price)
