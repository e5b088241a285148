"""The KV cache of the sequences being decoded together, left-padded to one length.

New sequences are prefilled in one padded forward and appended to the running batch (their
cache padded on the left to the batch's length, or the batch's to theirs); finished sequences
are dropped by index and leading columns that only hold padding are trimmed. Positions are
per row (the count of real tokens), so left padding never shifts a sequence's rotary positions.
Works with models whose cache layers are plain full-attention ``DynamicLayer``s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from tunesmith.errors import TunesmithError
from tunesmith.infer.virtual import Virtual


class KVBatch:
    """A ``DynamicCache`` (per layer ``[B, heads, T, dim]``), the attention mask ``[B, T]`` and positions ``[B]``."""

    def __init__(self, cache: Any, mask: torch.Tensor):
        _check(cache)
        self.cache = cache
        self.mask = mask
        self.positions = mask.sum(dim=1)

    def __len__(self) -> int:
        return int(self.mask.shape[0])

    @classmethod
    def prefill(cls, model: Any, prompts: Sequence[Sequence[int]], pad_id: int,
                adapter_names: list[str] | None, virtual: Virtual | None = None) -> tuple[KVBatch, torch.Tensor]:
        """Run ``prompts`` (left-padded) through ``model``; the new batch and each row's next-token logits.
        With ``virtual`` (a prompt/prefix-tuning adapter) ``model`` is its transformer and the virtual tokens
        go in front (``infer.virtual``)."""
        from transformers import DynamicCache

        if virtual is not None:
            inputs, mask = virtual.prefill(prompts, pad_id)
            out = model(attention_mask=mask, use_cache=True, logits_to_keep=1, **inputs)
            return cls(out.cache, mask), out.logits[:, -1, :]
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        extra = {"adapter_names": adapter_names} if adapter_names is not None else {}
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=DynamicCache(),
                    use_cache=True, logits_to_keep=1, **extra)
        return cls(out.cache, mask), out.logits[:, -1, :]

    def step(self, model: Any, tokens: Sequence[int], adapter_names: list[str] | None) -> torch.Tensor:
        """Feed one token per row; return the next-token logits ``[B, vocab]``."""
        self.mask = torch.cat([self.mask, torch.ones(len(self), 1, dtype=self.mask.dtype)], dim=1)
        extra = {"adapter_names": adapter_names} if adapter_names is not None else {}
        out = model(input_ids=torch.tensor(list(tokens)).unsqueeze(1), attention_mask=self.mask,
                    position_ids=self.positions.unsqueeze(1), cache=self.cache, use_cache=True, **extra)
        self.positions = self.positions + 1
        return out.logits[:, -1, :]

    def extend(self, other: KVBatch) -> None:
        """Append ``other``'s rows."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        pad_a, pad_b = width - self.mask.shape[1], width - other.mask.shape[1]
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.keys = torch.cat([_left(mine.keys, pad_a), _left(theirs.keys, pad_b)])
            mine.values = torch.cat([_left(mine.values, pad_a), _left(theirs.values, pad_b)])
        self.mask = torch.cat([F.pad(self.mask, (pad_a, 0)), F.pad(other.mask, (pad_b, 0))])
        self.positions = torch.cat([self.positions, other.positions])

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (in that order), then trim columns that are padding in every kept row."""
        index = torch.tensor(list(rows), dtype=torch.long)
        mask = self.mask.index_select(0, index)
        used = mask.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else mask.shape[1]
        self.mask = mask[:, start:]
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, start:]
            layer.values = layer.values.index_select(0, index)[:, :, start:]
        self.positions = self.positions.index_select(0, index)


def _left(t: torch.Tensor, pad: int) -> torch.Tensor:
    return F.pad(t, (0, 0, pad, 0)) if pad else t


def _check(cache: Any) -> None:
    from transformers.cache_utils import DynamicLayer

    for layer in cache.layers:
        if type(layer) is not DynamicLayer:
            raise TunesmithError(f"serve: the model's cache layer {type(layer).__name__} is not a full-attention "
                                 "DynamicLayer; serve this model with --engine vllm")
