"""Batch collation that masks padding by position, never by token id.

So a real EOS is never masked even when ``pad_token == eos_token`` (or there is no pad token).
Packed rows (with ``position_ids``) get a block-diagonal causal 4D mask for the eager and sdpa
attention implementations, so samples sharing a row never attend to each other whatever the
model's cache settings; flash-attention implementations get ``position_ids`` only, from which
they derive the sample boundaries themselves.

``padding_free=True`` concatenates a micro batch's rows into one row with ``position_ids``
restarting at 0 per sample, no attention mask and no padding at all (for ``tunesmith.train.varlen``
attention or flash-attention varlen). The first label of every sample is -100, which is exactly
what a padded batch trains (a row's first token is never a target), so the loss is the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunesmith.tokenize.chat import IGNORE

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Collator:
    """Right-pad ``input_ids``/``labels`` (+ ``position_ids``, ``loss_weights``) rows into tensors.

    ``pad_token_id`` only fills padding slots (None: 0). ``attn_implementation`` must be the
    model's (``model.config._attn_implementation``): packed rows get a boolean mask for "sdpa",
    an additive ``mask_dtype`` mask for "eager", ``position_ids`` only for flash attention.
    """

    pad_token_id: int | None
    attn_implementation: str = "sdpa"
    mask_dtype: str = "float32"
    padding_free: bool = False

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        import torch

        if self.padding_free:
            return self._concatenated(rows)

        width = max(len(r["input_ids"]) for r in rows)
        fill = 0 if self.pad_token_id is None else self.pad_token_id
        ids = torch.full((len(rows), width), fill, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        real = torch.zeros((len(rows), width), dtype=torch.bool)
        for b, row in enumerate(rows):
            n = len(row["input_ids"])
            ids[b, :n] = torch.tensor(row["input_ids"], dtype=torch.long)
            labels[b, :n] = torch.tensor(row["labels"], dtype=torch.long)
            real[b, :n] = True
        batch = {"input_ids": ids, "labels": labels}
        if "loss_weights" in rows[0]:
            weights = torch.zeros((len(rows), width), dtype=torch.float32)
            for b, row in enumerate(rows):
                weights[b, : len(row["loss_weights"])] = torch.tensor(row["loss_weights"], dtype=torch.float32)
            batch["loss_weights"] = weights
        if "position_ids" not in rows[0]:
            batch["attention_mask"] = real.long()
            return batch
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        for b, row in enumerate(rows):
            n = len(row["position_ids"])
            positions[b, :n] = torch.tensor(row["position_ids"], dtype=torch.long)
            positions[b, n:] = torch.arange(width - n)  # padding forms its own segment
        batch["position_ids"] = positions
        if self.attn_implementation in ("sdpa", "eager"):
            batch["attention_mask"] = self._packed_mask(positions)
        elif not self.attn_implementation.startswith("flash"):
            raise ValueError(
                f"sample_packing: no packed-sequence mask for attn_implementation={self.attn_implementation!r} "
                "(supported: sdpa, eager, flash_attention_*)"
            )
        return batch

    def _concatenated(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """One row, no padding: samples side by side, positions restarting, boundary labels -100."""
        import torch

        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        weights: list[float] = []
        for row in rows:
            ids.extend(row["input_ids"])
            labels.append(IGNORE)
            labels.extend(row["labels"][1:])
            positions.extend(row.get("position_ids") or range(len(row["input_ids"])))
            if "loss_weights" in row:
                weights.append(0.0)
                weights.extend(row["loss_weights"][1:])
        batch = {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
                 "position_ids": torch.tensor([positions])}
        if "loss_weights" in rows[0]:
            batch["loss_weights"] = torch.tensor([weights], dtype=torch.float32)
        return batch

    def _packed_mask(self, positions: torch.Tensor) -> torch.Tensor:
        """(batch, 1, q, k) mask: causal, and only within the segment that ``positions`` restart."""
        import torch

        segment = (positions == 0).cumsum(dim=-1)
        same = segment[:, :, None] == segment[:, None, :]
        width = positions.shape[-1]
        causal = torch.ones((width, width), dtype=torch.bool).tril()
        allowed = (same & causal)[:, None, :, :]
        if self.attn_implementation == "sdpa":
            return allowed
        dtype = getattr(torch, self.mask_dtype)
        return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
