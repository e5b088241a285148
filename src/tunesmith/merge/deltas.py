"""TIES and DARE over LoRA adapters, exactly: each method computed on every adapted layer's whole weight delta.

PEFT's ``add_weighted_adapter`` applies ties / dare_* to the A and B factors separately, so its merged delta
(Σ w·B)(Σ w·A) has cross terms and is not the method (dare_linear at density 1 was 95 % off the weighted sum
of the task vectors). Here the task vector of an adapted layer is the delta its adapter adds when folded,
ΔW = B·A·scale (PEFT's ``get_delta_weight``; zero where an adapter does not touch the layer), and the deltas
are combined as mergekit's generalized task arithmetic combines full models' task vectors (``combine``, with
the method's ``task_vectors`` row of methods.yaml), then added to the base weight.

The fold is checked as PEFT's is: the combination applied at run time (each base layer unchanged, a forward
hook adding its ΔW's output) against the folded model saved and reloaded; a delta folded into a weight tied
to another layer, for one, fails it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.merge.run import MergeResult


def combine(deltas: list[Any], weights: list[float], density: float, rule: dict[str, Any]) -> Any:
    """The task vectors ``deltas`` (one tensor shape) merged with ``weights`` as mergekit's generalized task
    arithmetic merges them, with mergekit's own ``sparsify`` and ``get_mask`` (``rule``: sparsify
    magnitude|random|None, rescale, consensus, normalize)."""
    import torch
    from mergekit.merge_methods.generalized_task_arithmetic import get_mask

    kept = torch.stack([sparsify(d, density, rule.get("sparsify"), bool(rule.get("rescale"))) for d in deltas])
    w = torch.tensor(weights, dtype=kept.dtype, device=kept.device).reshape(-1, *[1] * (kept.dim() - 1))
    weighted = kept * w
    if rule.get("consensus"):  # TIES: the sign of the weighted sum is elected, only values of that sign count
        mask = get_mask(weighted, method="sum", mask_dtype=kept.dtype)
        mixed, divisor = (weighted * mask).sum(dim=0), (w * mask).sum(dim=0)
        divisor[divisor == 0] = 1
    else:
        mixed, divisor = weighted.sum(dim=0), w.sum(dim=0)
        divisor[divisor.abs() < 1e-8] = 1
    return mixed / divisor if rule.get("normalize") else mixed


def sparsify(delta: Any, density: float, method: str | None, rescale: bool) -> Any:
    """mergekit's sparsification (``mergekit.sparsify``): the largest ``density`` share (magnitude) or a random
    one (DARE), rescaled to the task vector's L1 norm when ``rescale``."""
    from mergekit.sparsify import RescaleNorm, SparsificationMethod
    from mergekit.sparsify import sparsify as mergekit_sparsify

    if method is None or density >= 1:
        return delta
    return mergekit_sparsify(delta, density=density, method=SparsificationMethod(method),
                             rescale_norm=RescaleNorm.l1 if rescale else None)


def layer_deltas(model: Any, names: list[str], weights: list[float], density: float,
                 rule: dict[str, Any]) -> dict[str, Any]:
    """Every adapted layer of the PEFT ``model`` (by its name in the base model): the combined delta of ``names``."""
    import torch
    from peft.tuners.lora import LoraLayer

    combined = {}
    with torch.no_grad():
        for key, layer in model.base_model.model.named_modules():
            if not isinstance(layer, LoraLayer):
                continue
            base = layer.get_base_layer()
            if not isinstance(base, (torch.nn.Linear, torch.nn.Embedding)):
                raise TunesmithError(f"{key}: a LoRA on a {type(base).__name__} layer; tunesmith combines adapters "
                                     "of Linear and Embedding layers - pass --full-models")
            zero = torch.zeros_like(base.weight, dtype=torch.float32)  # an adapter that does not touch the layer
            deltas = [layer.get_delta_weight(n).float() if n in layer.lora_A or n in layer.lora_embedding_A else zero
                      for n in names]
            combined[key] = combine(deltas, weights, density, rule).to(base.weight.dtype)
    return combined


def _hooked(model: Any, combined: dict[str, Any]) -> list[Any]:
    """Forward hooks adding each layer's combined delta to its output: the combination unfolded."""
    import torch
    import torch.nn.functional as F

    def hook(delta: Any) -> Any:
        def add(module: Any, args: tuple[Any, ...], output: Any) -> Any:
            apply = F.embedding if isinstance(module, torch.nn.Embedding) else F.linear
            return output + apply(args[0], delta)
        return add

    return [model.get_submodule(key).register_forward_hook(hook(delta)) for key, delta in combined.items()]


def run_deltas(plan: Any, out: Path) -> MergeResult:
    """Combine LoRA adapters layer by layer on their deltas, fold the combination into the base, check the fold."""
    import time

    import torch

    from tunesmith.merge.backends import load_sources, probe_ids
    from tunesmith.merge.run import TOLERANCE, _compare, _logits
    from tunesmith.train.artifacts import save_result

    t0 = time.perf_counter()
    model, names = load_sources(plan)
    with torch.random.fork_rng():  # DARE drops at random: reproducible, without touching the caller's RNG
        torch.manual_seed(plan.seed)
        combined = layer_deltas(model, names, plan.weights, plan.params.get("density", 1.0), plan.method.task_vectors)
    plain = model.unload()  # the base model, every layer as it was
    plain.eval()
    tokenizer, ids = probe_ids(plan)
    hooks = _hooked(plain, combined)
    try:
        expected = _logits(plain, ids)  # the combination applied at run time, before it is folded
    finally:
        for handle in hooks:
            handle.remove()
    with torch.no_grad():
        for key, delta in combined.items():
            plain.get_submodule(key).weight.add_(delta)
    del combined
    save_result(plain, tokenizer, out, plan.info())
    return _compare(out, ids, expected, TOLERANCE, t0)
