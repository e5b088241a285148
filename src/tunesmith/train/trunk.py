"""Frozen-trunk activation cache: an adapter on the top layers only trains from the hidden states
that enter its first layer, computed once per training sample.

When every trainable parameter lives in decoder layers >= k (LoRA with
``peft_layers_to_transform``), the embedding and layers 0..k-1 are frozen and deterministic (no
dropout, no hook), so their output for a sample never changes. The first time a sample appears
the trunk runs on its batch under ``no_grad`` (what the full forward costs anyway: no gradient
flows there) and the hidden states entering layer k are kept per sample; later epochs run only
layers k..N-1, the final norm and ``lmloss``'s chunked LM-head loss from them. The validation
loss takes the same path (``speed.FastLossTrainer.prediction_step``), so validation samples are
kept too (``trunk_cache_max_mb`` is checked against training + validation tokens).

Exact: the layers get what the model's own forward gives them (``trunk_layouts.yaml`` names how
each ``model_type`` builds its attention masks; rotary embeddings and ``position_ids`` as its
forward computes them), and a sample's trunk output is independent of the batch it sits in: each
sample of a padding-free or packed row attends only to itself (its ``position_ids`` restart at 0),
a padded row's real tokens never attend to its right padding. Samples are keyed by their tokens, so
a sample is found again in any batch layout. Padding positions are not kept (zeros: they reach no
loss). ``tests/test_trunk_cache.py`` trains with and without the cache and compares losses and
adapter weights. The decision and what was held go to run.json (``trunk_cache``).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from typing import Any, Callable

import torch

from tunesmith.config import Config
from tunesmith.config.methods import method_spec
from tunesmith.config.yaml_load import load_table
from tunesmith.errors import ConfigError
from tunesmith.train import lmloss, varlen

_RANDOM_CONFIG_KEYS = ("dropout", "pdrop")  # model config entries that make a layer random in training


@cache
def layouts() -> dict[str, dict[str, str]]:
    return load_table(resources.files("tunesmith.train").joinpath("trunk_layouts.yaml").read_text("utf-8"))


def _masks_causal(config: Any, count: int, kwargs: dict[str, Any]) -> list[Any]:
    from transformers.masking_utils import create_causal_mask

    return [create_causal_mask(**kwargs)] * count


def _masks_sliding_window(config: Any, count: int, kwargs: dict[str, Any]) -> list[Any]:
    from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

    build = create_causal_mask if getattr(config, "sliding_window", None) is None else create_sliding_window_causal_mask
    return [build(**kwargs)] * count


def _masks_layer_types(config: Any, count: int, kwargs: dict[str, Any]) -> list[Any]:
    from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

    types = config.layer_types
    built = {"full_attention": create_causal_mask(**kwargs)}
    if "sliding_attention" in types:
        built["sliding_attention"] = create_sliding_window_causal_mask(**kwargs)
    return [built[types[i]] for i in range(count)]


# how a decoder builds each layer's mask: the `mask` values of trunk_layouts.yaml
MASKS: dict[str, Callable[[Any, int, dict[str, Any]], list[Any]]] = {
    "causal": _masks_causal, "sliding_window": _masks_sliding_window, "layer_types": _masks_layer_types}


@dataclass(frozen=True)
class Trunk:
    """A decoder's parts in the order its forward uses them."""

    config: Any
    embed: Any
    layers: Any
    rotary: Any
    norm: Any
    mask: str

    def masks(self, like: torch.Tensor, attention_mask: Any, position_ids: torch.Tensor) -> list[Any]:
        kwargs = {"config": self.config, "inputs_embeds": like, "attention_mask": attention_mask, "cache": None,
                  "position_ids": position_ids}
        return MASKS[self.mask](self.config, len(self.layers), kwargs)

    def run(self, hidden: torch.Tensor, layers: range, masks: list[Any], rotary: Any,
            position_ids: torch.Tensor) -> torch.Tensor:
        for i in layers:
            hidden = self.layers[i](hidden, attention_mask=masks[i], position_embeddings=rotary,
                                    position_ids=position_ids, cache=None, use_cache=False)
        return hidden


def find(model: Any) -> Trunk | str:
    """The decoder's parts (``model`` may be PEFT-wrapped), or why its forward is not mirrored here."""
    config = model.config
    layout = layouts().get(getattr(config, "model_type", None) or "")
    if layout is None:
        return (f"model_type {getattr(config, 'model_type', None)!r} has no trunk layout "
                f"(supported: {', '.join(sorted(layouts()))})")
    decoder = model.get_decoder()
    missing = [n for n in ("embed_tokens", "layers", "rotary_emb", "norm") if not hasattr(decoder, n)]
    if missing:
        return f"{type(decoder).__name__} has no {', '.join(missing)}"
    return Trunk(config, decoder.embed_tokens, decoder.layers[: config.num_hidden_layers], decoder.rotary_emb,
                 decoder.norm, layout["mask"])


def first_trained_layer(model: Any, trunk: Trunk) -> int | str:
    """k: the lowest decoder layer with a trainable parameter (the layer count when none trains),
    or why there is no frozen trunk."""
    owner: dict[int, int] = {id(p): -1 for p in trunk.embed.parameters()}
    for index, layer in enumerate(trunk.layers):
        owner.update({id(p): index for p in layer.parameters()})
    trained = {owner.get(id(p)) for p in model.parameters() if p.requires_grad}
    if -1 in trained:
        return "the input embedding trains"
    layers = [i for i in trained if i is not None]
    first = min(layers) if layers else len(trunk.layers)
    if first == 0:
        return "layer 0 trains (an adapter on every layer): there is no frozen trunk below it"
    return first


def randomness(trunk: Trunk, first: int) -> str | None:
    """Why the trunk's output could change between steps (dropout, a forward hook), or None."""
    for name, value in trunk.config.to_dict().items():
        if any(w in name for w in _RANDOM_CONFIG_KEYS) and isinstance(value, (int, float)) \
                and not isinstance(value, bool) and value > 0:
            return f"the model config's {name} is {value}: the trunk's output is random in training"
    parts = [("embed_tokens", trunk.embed), *((f"layers.{i}", trunk.layers[i]) for i in range(first))]
    for prefix, module in parts:
        for name, sub in module.named_modules():
            where = f"{prefix}.{name}" if name else prefix
            if isinstance(sub, torch.nn.Dropout) and sub.p > 0:
                return f"{where} is a dropout (p={sub.p}): the trunk's output is random in training"
            if sub._forward_hooks or sub._forward_pre_hooks:
                return f"{where} has a forward hook (e.g. NEFTune noise): its output may change between steps"
    return None


@dataclass(frozen=True)
class Decision:
    enabled: bool
    why: str
    layer: int | None = None  # k: the cache holds the hidden states entering this layer
    layers: int | None = None  # the model's decoder layers
    estimate_bytes: int = 0
    budget_bytes: int = 0

    def record(self) -> dict[str, Any]:
        return asdict(self)


def _blocker(config: Config, speedups: Any, world_size: int) -> str | None:
    if method_spec(config.method).trainer != "sft":
        return "only SFT/cpt"
    if not speedups.fused_loss:
        return "needs fused_loss (the cached path ends in its chunked LM-head loss)"
    if world_size > 1:
        return "several processes (the fused loss path is single-process)"
    return None


def choose(config: Config, model: Any, speedups: Any, tokens: int, passes: float, world_size: int = 1) -> Decision:
    """Whether this run trains from a trunk cache, and why (``tokens``: training tokens; ``passes``:
    how many times each training row is seen). ``trunk_cache: true`` raises where it cannot apply."""
    if config.trunk_cache is False:
        return Decision(False, "trunk_cache: false in config")
    found = _blocker(config, speedups, world_size) or find(model)
    layer: int | str = found if isinstance(found, str) else first_trained_layer(model, found)
    blocker = layer if isinstance(layer, str) else randomness(found, layer)
    if blocker is not None:
        return _refused(config, blocker)
    hidden = found.config.hidden_size
    estimate = int(tokens) * hidden * found.embed.weight.element_size()
    budget = config.trunk_cache_max_mb * 2**20
    facts = {"layer": layer, "layers": len(found.layers), "estimate_bytes": estimate, "budget_bytes": budget}
    if estimate > budget:
        return _refused(config, f"the cache would hold ~{estimate / 2**20:.0f} MB, over trunk_cache_max_mb "
                                f"({config.trunk_cache_max_mb})", facts)
    if config.trunk_cache == "auto" and passes <= 1:
        return Decision(False, "off: each training row is seen once: nothing to reuse", **facts)
    return Decision(True, "on", **facts)


def _refused(config: Config, blocker: str, facts: dict[str, Any] | None = None) -> Decision:
    if config.trunk_cache is True:
        raise ConfigError(f"trunk_cache: true is not possible for this run: {blocker}")
    return Decision(False, f"off: {blocker}", **(facts or {}))


def segments(input_ids: torch.Tensor, position_ids: torch.Tensor | None,
             attention_mask: torch.Tensor | None) -> list[tuple[int, int, int]] | None:
    """(row, start, end) of each independent sample of a collated batch (positions restarting at 0,
    or a right-padded row's real tokens), or None when the layout is not one of the collator's."""
    rows, width = input_ids.shape
    if position_ids is not None:
        if attention_mask is not None and attention_mask.dim() != 4:
            return None
        index = torch.arange(width, device=position_ids.device)
        out = []
        for b in range(rows):
            p = position_ids[b if position_ids.shape[0] == rows else 0]
            spans = varlen.segments(p.unsqueeze(0))  # the attention's own rule for where a sample starts
            starts = torch.where(p == 0, index, torch.zeros_like(index)).cummax(0).values
            if spans is None or not torch.equal(p, index - starts):  # positions count 0, 1, ... in each sample
                return None
            out.extend((b, s, e) for s, e in spans)
        return out
    if attention_mask is None:
        return [(b, 0, width) for b in range(rows)]
    if attention_mask.dim() != 2:
        return None
    real = attention_mask.sum(1).tolist()
    if any(not bool(attention_mask[b, :n].all()) for b, n in enumerate(real)):
        return None  # not right padding
    return [(b, 0, int(n)) for b, n in enumerate(real) if n]


class TrunkCache:
    """The hidden states entering layer ``first`` per sample (keyed by its tokens), kept on the CPU
    up to ``budget_bytes``; ``loss`` is ``lmloss.fused_loss`` computed from them."""

    def __init__(self, trunk: Trunk, first: int, budget_bytes: int) -> None:
        self.trunk, self.first, self.budget = trunk, first, budget_bytes
        self.store: dict[bytes, torch.Tensor] = {}
        self.bytes_held = 0
        self.counts = {"steps_from_cache": 0, "steps_computed": 0, "steps_not_cacheable": 0, "samples_over_budget": 0}

    @staticmethod
    def key(tokens: torch.Tensor) -> bytes:
        return hashlib.blake2b(tokens.detach().cpu().numpy().tobytes(), digest_size=16).digest()

    def loss(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any, chunk: int) -> torch.Tensor:
        ids, mask = inputs["input_ids"], inputs.get("attention_mask")
        given = inputs.get("position_ids")
        positions = given if given is not None else torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        found = segments(ids, given, mask)
        host = ids.detach().cpu()  # one copy to the host per step, not one per sample
        keys = [self.key(host[b, s:e]) for b, s, e in found] if found is not None else None
        hidden = self._lookup(ids, found, keys) if keys is not None else None
        if hidden is None:
            with torch.no_grad():
                hidden = self.trunk.embed(ids)
                masks = self.trunk.masks(hidden, mask, positions)
                rotary = self.trunk.rotary(hidden, positions)
                hidden = self.trunk.run(hidden, range(self.first), masks, rotary, positions)
            self._keep(hidden, found, keys)
        else:
            like = torch.empty(hidden.shape, dtype=self.trunk.embed.weight.dtype, device=hidden.device)
            masks = self.trunk.masks(like, mask, positions)
            rotary = self.trunk.rotary(like, positions)
        top = self.trunk.run(hidden, range(self.first, len(self.trunk.layers)), masks, rotary, positions)
        return lmloss.trained_positions_loss(self.trunk.norm(top), inputs["labels"], model.get_output_embeddings(),
                                             num_items_in_batch, chunk, inputs.get("loss_weights"))

    def _lookup(self, ids: torch.Tensor, found: list[tuple[int, int, int]], keys: list[bytes]) -> torch.Tensor | None:
        if not keys or any(k not in self.store for k in keys):
            return None
        sample = self.store[keys[0]]
        hidden = torch.zeros((*ids.shape, sample.shape[-1]), dtype=sample.dtype, device=ids.device)
        for (b, s, e), k in zip(found, keys):
            hidden[b, s:e] = self.store[k]
        self.counts["steps_from_cache"] += 1
        return hidden

    def _keep(self, hidden: torch.Tensor, found: list[tuple[int, int, int]] | None, keys: list[bytes] | None) -> None:
        if found is None or keys is None:
            self.counts["steps_not_cacheable"] += 1
            return
        self.counts["steps_computed"] += 1
        for (b, s, e), k in zip(found, keys):
            if k in self.store:
                continue
            part = hidden[b, s:e].detach().to("cpu", copy=True)
            if self.bytes_held + part.nbytes > self.budget:
                self.counts["samples_over_budget"] += 1
                continue
            self.store[k] = part
            self.bytes_held += part.nbytes

    def record(self) -> dict[str, Any]:
        return {"bytes_held": self.bytes_held, "samples_cached": len(self.store), **self.counts}


def passes(config: Config, epochs: float, rows: int) -> float:
    """How many times each training row is seen (``max_steps`` counts when set)."""
    if config.max_steps > 0:
        return config.max_steps * config.micro_batch_size * config.gradient_accumulation_steps / max(rows, 1)
    return float(epochs or 1)


def setup(trainer: Any, config: Config, model: Any, speedups: Any, stats: dict[str, Any], epochs: float, rows: int,
          world_size: int, say: Callable[[str], None]) -> Decision:
    """Decide (``stats``: tokenization's, ``epochs``: the resolved ``num_epochs``), and give ``trainer``
    (a ``speed.FastLossTrainer``) its cache when on."""
    # the validation loss takes the same path (speed.FastLossTrainer.prediction_step): its samples are kept too
    tokens = (stats.get("tokens") or rows * config.sequence_len) + (stats.get("eval_tokens") or 0)
    decision = choose(config, model, speedups, tokens, passes(config, epochs, rows), world_size)
    if decision.enabled and hasattr(trainer, "trunk_cache"):
        trunk = find(model)
        assert not isinstance(trunk, str) and decision.layer is not None
        trainer.trunk_cache = TrunkCache(trunk, decision.layer, decision.budget_bytes)
        say(f"trunk cache: layers 0-{decision.layer - 1} of {decision.layers} frozen: their output is computed "
            f"once per training sample (~{decision.estimate_bytes / 2**20:.0f} MB) and reused")
    elif "trunk_cache_max_mb" in decision.why:
        say(f"trunk cache: {decision.why}")
    return decision


def finish(trainer: Any, decision: Decision) -> dict[str, Any]:
    """run.json's ``trunk_cache``: the decision and what the cache held; the cache is released."""
    held = getattr(trainer, "trunk_cache", None)
    if held is None:
        return decision.record()
    trainer.trunk_cache = None
    return {**decision.record(), **held.record()}
