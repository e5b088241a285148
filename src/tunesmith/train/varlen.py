"""Padding-free attention: a micro batch's samples concatenated into one row, each attending only
to itself, at the cost of its own length squared (not the row's).

The collator (``Collator(padding_free=True)``) puts every sample of a micro batch in one row with
``position_ids`` restarting at 0 per sample and no attention mask. Under the attention
implementation registered here, transformers builds no mask for such a row, and each attention
layer runs PyTorch's causal SDPA once per sample (the boundaries are where ``position_ids`` is
0). Anything else (a padding mask, a KV cache, several rows) goes to transformers' own ``sdpa``
unchanged, so a model trained this way still generates normally.

Exact: a sample's attention output is the same as alone (or right-padded in a batch), and no
padding token is processed. Flash-attention varlen on CUDA does the same from ``position_ids``
(transformers' ``flash_attention_2``); it is used there when installed (untested here: no GPU).
"""

from __future__ import annotations

from typing import Any

import torch

NAME = "tunesmith_varlen_sdpa"


def segments(position_ids: torch.Tensor) -> list[tuple[int, int]] | None:
    """(start, end) of each sample in a one-row ``position_ids``; None unless it starts at 0."""
    starts = (position_ids[0] == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        return None
    return list(zip(starts, [*starts[1:], position_ids.shape[-1]]))


def attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
              position_ids: torch.Tensor | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    spans = None
    if attention_mask is None and position_ids is not None and query.shape[0] == 1 \
            and query.shape[2] == key.shape[2] == position_ids.shape[-1]:
        spans = segments(position_ids)
    if spans is None or len(spans) == 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    gqa = query.shape[1] != key.shape[1]
    parts = [
        torch.nn.functional.scaled_dot_product_attention(
            query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], dropout_p=dropout, scale=scaling, is_causal=True,
            enable_gqa=gqa)
        for s, e in spans
    ]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def _mask(*args: Any, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor | None:
    """transformers' sdpa mask when a padding mask is given; none for mask-free (padding-free) rows."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None:
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register() -> str:
    """Add the implementation to transformers' attention registries (idempotent); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, _mask)
    return NAME


def unsupported(model: Any) -> str | None:
    """None when ``model`` can train padding-free here, else why not."""
    config = model.config
    if not getattr(model, "_supports_attention_backend", False):
        return f"{type(model).__name__} does not take a custom attention implementation"
    if getattr(config, "sliding_window", None) or getattr(config, "use_sliding_window", False):
        return "the model uses sliding-window attention"
    if config._attn_implementation not in ("sdpa", "eager", NAME):
        return f"attn_implementation is {config._attn_implementation}"
    return None
