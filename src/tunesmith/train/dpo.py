"""DPO on tunesmith's pre-tokenized pairs: TRL's ``DPOTrainer``, and its fast path.

``PretokenizedDPOTrainer`` is TRL's trainer fed with tunesmith's ``prompt_ids`` / ``chosen_ids`` /
``rejected_ids`` (no re-tokenization). ``FastDPOTrainer`` keeps TRL's trainer (arguments, loss
types' formulas, metrics, logging, checkpoints) and replaces only the loss computation:

* ``PreferenceCollator(padding_free=True)`` puts every prompt+chosen and prompt+rejected sequence
  of a micro batch in one row without padding (each attends only to itself: ``train/varlen.py``);
  with ``padding_free`` off it pads them like TRL's collator;
* the LM head runs only at completion positions, chunked (``_CompletionLogProbs``): no
  vocabulary-sized logits for prompt or padding positions (TRL's fused head scores every position
  on CPU), and the per-token statistics TRL logs (entropy, mean logit, top-1) come from the same
  chunks;
* the reference log-probs come from the same layout under ``no_grad`` with the adapter disabled
  (or the frozen reference model), or from the dataset when TRL precomputed them.

Exact: the same sequences (TRL's ``keep_start`` truncation at ``max_length``), the same scored
positions and the same formulas; ``tests/test_train_fast.py`` compares loss, metrics and
gradients with TRL's own ``_compute_loss``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable

import torch
import torch.nn.functional as F
from accelerate.utils import is_peft_model
from trl import DPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import use_adapter

_DPO_COLUMNS = {"prompt_ids", "chosen_ids", "rejected_ids"}


# loss type -> per-pair loss from (trainer, chosen log-ratio, rejected log-ratio, completion lengths)
LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "sigmoid": lambda t, c, r, n: -F.logsigmoid(t.beta * (c - r)),
    "hinge": lambda t, c, r, n: torch.relu(1 - t.beta * (c - r)),
    "ipo": lambda t, c, r, n: (c / n[0].clamp(min=1.0) - r / n[1].clamp(min=1.0) - 1 / (2 * t.beta)) ** 2,
}


def unsupported(loss_types: list[str], model: Any) -> str | None:
    """None when the fast DPO loss covers ``loss_types`` on ``model``, else why not."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return "distributed training (the fast loss calls the decoder outside the data-parallel wrapper)"
    other = [t for t in loss_types if t not in LOSSES]
    if other:
        return f"loss_type {', '.join(other)} is computed by TRL's own path (fast: {', '.join(LOSSES)})"
    text = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if hasattr(text, "output_router_logits"):
        return "mixture-of-experts router loss (TRL's path adds it)"
    return None


class PreferenceCollator:
    """Micro batches of preference pairs as [prompt+chosen ..., prompt+rejected ...] sequences.

    ``padding_free``: one row, ``position_ids`` restarting at 0 per sequence, no attention mask;
    else right-padded rows with an attention mask (TRL's layout). Both carry the flat positions
    whose next token is a completion token (``target_positions``), those tokens
    (``target_ids``) and the sequence each belongs to (``target_segments``, 0..2B-1).
    """

    def __init__(self, pad_token_id: int, max_length: int | None, padding_free: bool) -> None:
        self.pad, self.max_length, self.padding_free = pad_token_id, max_length, padding_free

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        seqs, masks = [], []
        for side in ("chosen_ids", "rejected_ids"):
            for ex in examples:
                seqs.append((ex["prompt_ids"] + ex[side])[: self.max_length])
                masks.append(([0] * len(ex["prompt_ids"]) + [1] * len(ex[side]))[: self.max_length])
        lengths = torch.tensor([len(s) for s in seqs])
        out: dict[str, Any] = {}
        if self.padding_free:
            ids = torch.tensor([t for s in seqs for t in s])[None]
            completion = torch.tensor([m for ms in masks for m in ms])[None]
            segment = torch.repeat_interleave(torch.arange(len(seqs)), lengths)[None]
            starts = torch.cumsum(lengths, 0) - lengths
            out["position_ids"] = torch.arange(ids.shape[1])[None] - torch.repeat_interleave(starts, lengths)[None]
        else:
            width = int(lengths.max())
            ids = torch.tensor([s + [self.pad] * (width - len(s)) for s in seqs])
            completion = torch.tensor([m + [0] * (width - len(m)) for m in masks])
            segment = torch.arange(len(seqs))[:, None].expand(-1, width)
            out["attention_mask"] = (torch.arange(width)[None] < lengths[:, None]).long()
        flat_ids, flat_seg, flat_comp = ids.reshape(-1), segment.reshape(-1), completion.reshape(-1)
        scored = (flat_comp[1:] == 1) & (flat_seg[1:] == flat_seg[:-1])  # next token: a completion token, same sequence
        positions = scored.nonzero().squeeze(1)
        out.update(input_ids=ids, target_positions=positions, target_ids=flat_ids[positions + 1],
                   target_segments=flat_seg[positions + 1], num_sequences=len(seqs),
                   completion_lengths=torch.tensor([sum(m) for m in masks], dtype=torch.float32))
        for key in ("ref_chosen_logps", "ref_rejected_logps"):
            if key in examples[0]:
                out[key] = torch.tensor([ex[key] for ex in examples])
        return out


class _CompletionLogProbs(torch.autograd.Function):
    """log p(target | hidden) per row of ``hidden @ weight.T (+ bias)``, chunked, with TRL's per-token
    statistics (entropy, mean logit, target is the top-1) from the same chunks, without gradient.

    The gradient with respect to ``hidden`` (``weight[t] - softmax @ weight``) is formed in the
    forward pass, chunk by chunk; the weight's (a trained head) is recomputed in the backward."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                targets: torch.Tensor, chunk: int) -> tuple[torch.Tensor, ...]:
        n = hidden.shape[0]
        logp, entropy, mean = (torch.empty(n, dtype=torch.float32, device=hidden.device) for _ in range(3))
        top1 = torch.empty(n, dtype=torch.bool, device=hidden.device)
        lse_all = torch.empty(n, dtype=torch.float32, device=hidden.device)
        need_h = hidden.requires_grad
        d_hidden = torch.empty_like(hidden) if need_h else None
        with torch.no_grad():
            for start in range(0, n, chunk):
                h, t = hidden[start:start + chunk], targets[start:start + chunk]
                logits = F.linear(h, weight, bias).float()
                lse = torch.logsumexp(logits, dim=-1)
                target_logit = logits.gather(1, t[:, None]).squeeze(1)
                sl = slice(start, start + len(t))
                logp[sl], lse_all[sl], mean[sl] = target_logit - lse, lse, logits.mean(-1)
                top1[sl] = logits.argmax(-1) == t
                log_probs = logits.sub_(lse[:, None])  # in place of the logits
                probs = log_probs.exp()
                entropy[sl] = -(probs * log_probs).sum(-1)
                if need_h:
                    probs[torch.arange(len(t), device=t.device), t] -= 1.0  # softmax - onehot = -d logp / d logits
                    d_hidden[sl] = -(probs.to(weight.dtype) @ weight)
        ctx.save_for_backward(*(x for x in (d_hidden,) if x is not None), hidden, weight, bias, targets, lse_all)
        ctx.need_h, ctx.chunk = need_h, chunk
        ctx.mark_non_differentiable(entropy, mean, top1)
        return logp, entropy, mean, top1

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, *_: Any) -> tuple[Any, ...]:
        saved = list(ctx.saved_tensors)
        d_hidden = saved.pop(0) if ctx.need_h else None
        hidden, weight, bias, targets, lse = saved
        grad_h = d_hidden * grad[:, None].to(d_hidden.dtype) if ctx.need_h else None
        need_w, need_b = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
        if need_w or need_b:
            for start in range(0, hidden.shape[0], ctx.chunk):
                h, t = hidden[start:start + ctx.chunk], targets[start:start + ctx.chunk]
                g = grad[start:start + ctx.chunk].float()
                probs = F.linear(h, weight, bias).float().sub_(lse[start:start + len(t), None]).exp_()
                probs[torch.arange(len(t), device=t.device), t] -= 1.0
                d_logits = probs.mul_(-g[:, None])  # d loss / d logits
                if need_w:
                    grad_w += d_logits.t() @ h.float()
                if need_b:
                    grad_b += d_logits.sum(0)
        return (grad_h, grad_w.to(weight.dtype) if need_w else None, grad_b.to(bias.dtype) if need_b else None,
                None, None)


def sequence_log_probs(model: Any, inputs: dict[str, Any], chunk: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Each sequence's summed completion log-prob under ``model`` (decoder, then the head at the
    scored positions only), and the per-token (log-prob, entropy, mean logit, top-1)."""
    kwargs = {k: inputs[k] for k in ("input_ids", "attention_mask", "position_ids") if k in inputs}
    hidden = model.get_decoder()(**kwargs, use_cache=False).last_hidden_state
    head = model.get_output_embeddings()
    flat = hidden.reshape(-1, hidden.shape[-1]).index_select(0, inputs["target_positions"])
    if flat.dtype != head.weight.dtype and not torch.is_autocast_enabled(flat.device.type):
        flat = flat.to(head.weight.dtype)
    per_token = _CompletionLogProbs.apply(flat, head.weight, head.bias, inputs["target_ids"], chunk)
    sums = per_token[0].new_zeros(inputs["num_sequences"]).index_add(0, inputs["target_segments"], per_token[0])
    return sums, per_token


def _zero_lora(model: Any, name: str) -> bool:
    """Whether adapter ``name`` is plain LoRA with every B matrix zero: it then adds exactly nothing,
    and the reference pass can skip it (TRL copies the fresh adapter into a ``ref`` adapter)."""
    config = model.peft_config[name]
    if str(getattr(config.peft_type, "value", config.peft_type)) != "LORA" or getattr(config, "use_dora", False) \
            or getattr(config, "lora_bias", False):
        return False
    weights = [p for n, p in model.named_parameters() if f"lora_B.{name}." in n or f"lora_embedding_B.{name}." in n]
    return bool(weights) and all(not p.any() for p in weights)


class PretokenizedDPOTrainer(DPOTrainer):
    """TRL's DPOTrainer on rows that already hold ``prompt_ids`` / ``chosen_ids`` / ``rejected_ids``."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):  # type: ignore[no-untyped-def]
        if _DPO_COLUMNS <= set(dataset.column_names):
            return dataset
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)


class FastDPOTrainer(PretokenizedDPOTrainer):
    """TRL's DPOTrainer with the loss computed on ``PreferenceCollator`` batches (see the module)."""

    chunk = 1024
    _ref_adapter: bool | None = None  # whether the reference needs TRL's "ref" adapter (not a zero LoRA)

    def compute_ref_log_probs(self, model, inputs):  # type: ignore[no-untyped-def]
        """TRL's hook for precomputing the reference log-probs of a dataset (outside a training step)."""
        with self.accelerator.autocast():
            return self._reference_log_probs(model, inputs)

    def _reference_log_probs(self, model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference's (chosen, rejected) log-probs: ``model`` without the adapter (or with TRL's
        frozen ``ref`` copy of it), or the reference model."""
        adapter: Any = contextlib.nullcontext()
        if self.ref_model is None and is_peft_model(self.model):
            unwrapped = self.accelerator.unwrap_model(self.model)
            if self._ref_adapter is None:  # decided once: the "ref" adapter is frozen
                self._ref_adapter = "ref" in unwrapped.peft_config and not _zero_lora(unwrapped, "ref")
            adapter = use_adapter(unwrapped, adapter_name="ref" if self._ref_adapter else None)
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs), \
                adapter:
            return sequence_log_probs(model, inputs, self.chunk)[0].chunk(2)

    def _compute_loss(self, model, inputs, return_outputs):  # type: ignore[no-untyped-def]
        # the decoder is called directly, past the forward accelerate wraps in its mixed-precision autocast
        with self.accelerator.autocast():
            logps, per_token = sequence_log_probs(model, inputs, self.chunk)
            if self.precompute_ref_logps:
                ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
            else:
                ref_chosen, ref_rejected = self._reference_log_probs(self.ref_model or model, inputs)
        chosen, rejected = logps.chunk(2)
        chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected
        lengths = inputs["completion_lengths"].chunk(2)
        loss = sum(LOSSES[kind](self, chosen_ratio, rejected_ratio, lengths).mean() * weight
                   for kind, weight in zip(self.loss_types, self.loss_weights, strict=True))
        self._record(inputs, chosen, rejected, chosen_ratio, rejected_ratio, per_token)
        return (loss, {}) if return_outputs else loss

    def _record(self, inputs: dict[str, Any], chosen: torch.Tensor, rejected: torch.Tensor, chosen_ratio: torch.Tensor,
                rejected_ratio: torch.Tensor, per_token: tuple[torch.Tensor, ...]) -> None:
        """TRL's DPO metrics (same names and definitions), read back in one transfer."""
        mode = "train" if self.model.training else "eval"
        _, entropy, mean_logit, top1 = per_token
        is_chosen = inputs["target_segments"] < chosen.shape[0]
        rewards_c, rewards_r = self.beta * chosen_ratio.detach(), self.beta * rejected_ratio.detach()

        def mean(x: torch.Tensor) -> torch.Tensor:
            return x.float().mean() if x.numel() else x.new_zeros((), dtype=torch.float32)

        values = {"entropy": mean(entropy), "logits/chosen": mean(mean_logit[is_chosen]),
                  "logits/rejected": mean(mean_logit[~is_chosen]), "mean_token_accuracy": mean(top1[is_chosen]),
                  "rewards/chosen": rewards_c.mean(), "rewards/rejected": rewards_r.mean(),
                  "rewards/accuracies": (rewards_c > rewards_r).float().mean(),
                  "rewards/margins": (rewards_c - rewards_r).mean(),
                  "logps/chosen": chosen.detach().mean(), "logps/rejected": rejected.detach().mean()}
        mask = inputs.get("attention_mask")
        tokens = mask.sum() if mask is not None else torch.tensor(inputs["input_ids"].numel())
        numbers = torch.stack([v.detach().float().cpu() for v in values.values()] + [tokens.float().cpu()]).tolist()
        for name, number in zip(values, numbers):
            self._metrics[mode][name].append(number)
        if mode == "train":
            self._total_train_tokens += int(numbers[-1])
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):  # type: ignore[no-untyped-def]
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None
