"""Prompt and prefix tuning in the batching engine: the adapter's virtual tokens enter once, at prefill.

PEFT's forward puts them in front of every call's inputs (prompt tuning) or replaces the cache with them
(prefix tuning): right for a whole sequence, wrong for a decode step that feeds one token on a cache, and
its left-padded positions differ from training's. The engine therefore runs the transformer under the PEFT
wrapper itself: at prefill the virtual tokens become the first entries of each row's cache (prompt tuning:
the learned embeddings run through the model right before the row's tokens; prefix tuning: the learned keys
and values), every position counted as training counted it (virtual tokens first); decode steps then feed
tokens on that cache as for any other model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Virtual:
    """The virtual tokens of a prompt-learning adapter and the transformer they go in front of."""

    peft: Any  # the PeftModel (its prompt encoder)
    model: Any  # the transformer the engine runs
    prefix: bool  # True: learned keys/values (prefix tuning); False: learned input embeddings (prompt tuning)
    count: int

    def prefill(self, prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[dict[str, Any], torch.Tensor]:
        """The forward arguments of a left-padded prefill with the virtual tokens in front, and its mask."""
        from transformers import DynamicCache

        n, width = self.count, max(len(p) for p in prompts)
        pads = [width - len(p) for p in prompts]
        if self.prefix:  # [virtual | padding | tokens]: the learned cache comes first in every row
            ids = torch.tensor([[pad_id] * k + list(p) for k, p in zip(pads, prompts)])
            mask = torch.tensor([[1] * n + [0] * k + [1] * len(p) for k, p in zip(pads, prompts)])
            positions = (mask.cumsum(dim=1) - 1)[:, n:]
            return {"input_ids": ids, "position_ids": positions, "cache": self.peft.get_prompt(len(prompts))}, mask
        # [padding | virtual | tokens]: the learned embeddings take the slots right before each row's tokens
        ids = torch.tensor([[pad_id] * (k + n) + list(p) for k, p in zip(pads, prompts)])
        embeds = self.model.get_input_embeddings()(ids)
        learned = self.peft.get_prompt(batch_size=len(prompts)).to(embeds.dtype)
        for row, k in enumerate(pads):
            embeds[row, k : k + n] = learned[row]
        mask = torch.tensor([[0] * k + [1] * (n + len(p)) for k, p in zip(pads, prompts)])
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        return {"inputs_embeds": embeds, "position_ids": positions, "cache": DynamicCache()}, mask


def of(model: Any) -> Virtual | None:
    """The virtual tokens of ``model`` when it is a PEFT prompt- or prefix-tuning model, else None."""
    config = getattr(model, "active_peft_config", None)
    if not getattr(config, "is_prompt_learning", False):
        return None
    prefix = config.peft_type.value == "PREFIX_TUNING"
    if not prefix and config.peft_type.value != "PROMPT_TUNING":
        from tunesmith.errors import TunesmithError

        raise TunesmithError(f"serve: {config.peft_type.value} adapters are not served by the batching engine; "
                             "use tunesmith chat or evaluate")
    return Virtual(model, model.get_base_model(), prefix, int(config.num_virtual_tokens))
