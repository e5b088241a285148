"""The causal-LM loss computed only where a token is trained, chunked, with the LM head fused in.

transformers' plain path runs the LM head over every position (prompt, padding and all),
materialising a (batch, seq, vocab) logits tensor, its fp32 copy, the softmax and its gradient.
Here the decoder's final hidden states are gathered at the positions whose next-token label is
trained, and the head + cross-entropy run over chunks of them; each chunk's gradient with respect
to the hidden states (and to the head weight, when it trains) is computed in the same pass, so
at most one chunk of logits exists at a time and nothing is recomputed in the backward pass.

Exact: the same targets (``labels`` shifted by one, ``-100`` ignored), the same sum and the same
normaliser (``num_items_in_batch`` when the Trainer passes it, else the number of targets) as
``transformers.loss.loss_utils.ForCausalLMLoss``; ``tests/test_train_fast.py`` checks loss and
gradients against the plain path. With per-token weights (``loss_weights``, from per-message
``loss_weight``) each target's CE and its gradient are multiplied by its weight, as
``weighted_loss`` does on the plain path.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tunesmith.models.lmhead import head_extra

IGNORE = -100


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """sum over rows of CE(hidden @ weight.T (+ bias), targets) * scale, chunked, grads precomputed."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                targets: torch.Tensor, scale: float, chunk: int, token_weights: torch.Tensor | None = None) -> torch.Tensor:
        need_h, need_w = hidden.requires_grad, weight.requires_grad
        need_b = bias is not None and bias.requires_grad
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
        rows = torch.arange(min(chunk, hidden.shape[0]), device=hidden.device)
        with torch.no_grad():
            for start in range(0, hidden.shape[0], chunk):
                h = hidden[start:start + chunk]
                t = targets[start:start + chunk]
                w = token_weights[start:start + chunk] if token_weights is not None else None
                logits = nn.functional.linear(h, weight, bias).float()
                lse = torch.logsumexp(logits, dim=-1)
                ce = lse - logits.gather(1, t[:, None]).squeeze(1)
                total += (ce * w).sum() if w is not None else ce.sum()
                if not (need_h or need_w or need_b):
                    continue
                grad = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
                grad[rows[: len(t)], t] -= 1.0
                if w is not None:
                    grad.mul_(w[:, None])
                if need_h:
                    grad_h[start:start + chunk] = grad.to(weight.dtype) @ weight
                if need_w:
                    grad_w += grad.t() @ h.float()
                if need_b:
                    grad_b += grad.sum(0)
        ctx.scale = scale
        ctx.save_for_backward(*(g for g in (grad_h, grad_w, grad_b) if g is not None))
        ctx.has = (need_h, need_w, need_b)
        ctx.dtypes = (weight.dtype, bias.dtype if bias is not None else None)
        return total * scale

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        saved = iter(ctx.saved_tensors)
        factor = grad_out * ctx.scale
        need_h, need_w, need_b = ctx.has
        weight_dtype, bias_dtype = ctx.dtypes
        grad_h = next(saved) * factor if need_h else None
        grad_w = (next(saved) * factor).to(weight_dtype) if need_w else None
        grad_b = (next(saved) * factor).to(bias_dtype) if need_b else None
        return grad_h, grad_w, grad_b, None, None, None, None


def shifted_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat positions whose next token is trained, those next tokens), as ``ForCausalLMLoss`` shifts."""
    shift = nn.functional.pad(labels, (0, 1), value=IGNORE)[..., 1:].reshape(-1)
    positions = (shift != IGNORE).nonzero().squeeze(1)
    return positions, shift[positions]


def trained_positions_loss(hidden: torch.Tensor, labels: torch.Tensor, head: nn.Linear,
                           num_items_in_batch: torch.Tensor | int | None = None, chunk: int = 1024,
                           loss_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean (or sum / ``num_items_in_batch``) next-token CE at trained positions only; with
    ``loss_weights`` (aligned with ``labels``) each target's CE is weighted (the count stays the
    number of targets, as in ``weighted_loss``)."""
    positions, targets = shifted_targets(labels)
    flat = hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions)
    if flat.dtype != head.weight.dtype and not torch.is_autocast_enabled(flat.device.type):
        flat = flat.to(head.weight.dtype)  # as the head's own forward would need
    weights = None
    if loss_weights is not None:
        shifted = nn.functional.pad(loss_weights, (0, 1), value=0.0)[..., 1:].reshape(-1)
        weights = shifted.to(device=flat.device, dtype=torch.float32).index_select(0, positions)
    count = num_items_in_batch if num_items_in_batch is not None else max(int(targets.numel()), 1)
    scale = 1.0 / float(count)
    return _FusedLinearCrossEntropy.apply(flat, head.weight, head.bias, targets, scale, chunk, weights)


def supports_fused_loss(model: Any) -> str | None:
    """None when the fused loss applies to ``model`` (a PEFT model or a causal LM), else why not."""
    head = model.get_output_embeddings()
    if type(head) is not nn.Linear:
        return f"the LM head is a {type(head).__name__}, not a plain linear layer (adapter or modules_to_save on it)"
    extra = head_extra(lambda name: getattr(model.config, name, None))
    if extra is not None:
        return f"the model's head applies {extra}"
    peft_type = getattr(getattr(model, "peft_config", {}).get("default"), "peft_type", None)
    if peft_type is not None and str(getattr(peft_type, "value", peft_type)) in ("PROMPT_TUNING", "PREFIX_TUNING",
                                                                                  "P_TUNING"):
        return "prompt/prefix tuning adds virtual tokens in the PEFT wrapper's forward"
    return None


def fused_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any, chunk: int) -> torch.Tensor:
    """Run the decoder, then the fused head + loss at trained positions (``inputs`` has ``labels``,
    and ``loss_weights`` when the rows carry per-message weights)."""
    labels, weights = inputs["labels"], inputs.get("loss_weights")
    rest = {k: v for k, v in inputs.items() if k not in ("labels", "loss_weights")}
    hidden = model.get_decoder()(**rest, use_cache=False).last_hidden_state
    return trained_positions_loss(hidden, labels, model.get_output_embeddings(), num_items_in_batch, chunk, weights)


def weighted_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> tuple[torch.Tensor, Any]:
    """Next-token CE with a weight per target token (``inputs["loss_weights"]``, aligned with
    ``labels``: fractional per-message ``loss_weight``), summed and divided like transformers'
    ``ForCausalLMLoss`` (by ``num_items_in_batch``, else by the trained tokens): with every weight
    1 it equals the model's own loss (a prompt-tuned model's too: its virtual-token positions carry no target).
    Returns (loss, the model's outputs)."""
    labels, weights = inputs["labels"], inputs["loss_weights"]
    rest = {k: v for k, v in inputs.items() if k not in ("labels", "loss_weights")}
    outputs = model(**rest, use_cache=False)
    logits = outputs.logits.float()
    # prompt tuning (PEFT's prompt-learning forward) puts its virtual tokens in front of the sequence: the logits
    # are that much longer; like PEFT's own labels, those positions get no target and no weight
    virtual = logits.shape[1] - labels.shape[1]
    if virtual < 0:
        raise ValueError(f"the model returned {logits.shape[1]} positions for {labels.shape[1]} labels")
    targets = nn.functional.pad(labels, (virtual, 1), value=IGNORE)[..., 1:].reshape(-1).to(logits.device)
    shifted = nn.functional.pad(weights, (virtual, 1), value=0.0)[..., 1:].reshape(-1).to(logits.device)
    ce = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets, ignore_index=IGNORE,
                                     reduction="none")
    count = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE).sum().clamp(min=1)
    if torch.is_tensor(count):
        count = count.to(ce.device)
    return (ce * shifted).sum() / count, outputs
