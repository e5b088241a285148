"""Prompt and prefix tuning at generation time: the adapter's virtual tokens enter once, at prefill.

PEFT's forward puts them in front of every call's inputs (prompt tuning) or replaces the cache with them
(prefix tuning): right for a whole sequence, wrong for a decode step that feeds one token on a cache, and
its left-padded positions differ from training's (``model.generate`` on a prefix-tuning model under
transformers 5 even drops the prefix). ``infer.generate`` and the serving engine therefore run the
transformer under the PEFT wrapper themselves: at prefill the virtual tokens become the first entries of
each row's cache (prompt tuning: the learned embeddings run through the model right before the row's
tokens; prefix tuning: the learned keys and values), every position counted as training counted it
(virtual tokens first); decode steps then feed tokens on that cache as for any other model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Virtual:
    """The virtual tokens of a prompt-learning adapter and the transformer they go in front of."""

    peft: Any  # the PeftModel (its prompt encoder)
    model: Any  # the transformer that generation runs
    prefix: bool  # True: learned keys/values (prefix tuning); False: learned input embeddings (prompt tuning)
    count: int

    def prefill(self, prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[dict[str, Any], torch.Tensor]:
        """The forward arguments of a left-padded prefill with the virtual tokens in front, and its mask
        (on the transformer's device)."""
        import torch
        from transformers import DynamicCache

        n, width = self.count, max(len(p) for p in prompts)
        pads = [width - len(p) for p in prompts]
        device = self.model.get_input_embeddings().weight.device
        if self.prefix:  # [virtual | padding | tokens]: the learned cache comes first in every row
            ids = torch.tensor([[pad_id] * k + list(p) for k, p in zip(pads, prompts)], device=device)
            mask = torch.tensor([[1] * n + [0] * k + [1] * len(p) for k, p in zip(pads, prompts)], device=device)
            positions = (mask.cumsum(dim=1) - 1)[:, n:]
            return {"input_ids": ids, "position_ids": positions, "cache": self.peft.get_prompt(len(prompts))}, mask
        # [padding | virtual | tokens]: the learned embeddings take the slots right before each row's tokens
        ids = torch.tensor([[pad_id] * (k + n) + list(p) for k, p in zip(pads, prompts)], device=device)
        embeds = self.model.get_input_embeddings()(ids)
        learned = self.peft.get_prompt(batch_size=len(prompts)).to(embeds.dtype)
        for row, k in enumerate(pads):
            embeds[row, k : k + n] = learned[row]
        mask = torch.tensor([[0] * k + [1] * (n + len(p)) for k, p in zip(pads, prompts)], device=device)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        return {"inputs_embeds": embeds, "position_ids": positions, "cache": DynamicCache()}, mask

    def greedy(self, prompts: Sequence[Sequence[int]], pad_id: int, eos_ids: Sequence[int],
               max_new_tokens: int) -> list[list[int]]:
        """The greedy continuations of ``prompts`` (left-padded in one batch), as ``model.generate`` returns
        them: one token per row and step on the prefilled cache, positions continuing from the mask; a row
        that emitted a stop id is fed ``pad_id`` afterwards; stops when every row has, or at ``max_new_tokens``."""
        import torch

        if max_new_tokens <= 0:
            return [[] for _ in prompts]
        steps: list[torch.Tensor] = []
        with torch.inference_mode():
            inputs, mask = self.prefill(prompts, pad_id)
            stops = torch.tensor(list(eos_ids), device=mask.device)
            done = torch.zeros(len(prompts), dtype=torch.bool, device=mask.device)
            out = self.model(attention_mask=mask, use_cache=True, logits_to_keep=1, **inputs)
            positions = mask.sum(dim=1, keepdim=True)
            while True:
                token = torch.where(done, pad_id, out.logits[:, -1, :].argmax(dim=-1))
                steps.append(token)
                done = done | torch.isin(token, stops)
                if bool(done.all()) or len(steps) >= max_new_tokens:
                    break
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
                out = self.model(input_ids=token.unsqueeze(1), attention_mask=mask, position_ids=positions,
                                 cache=out.cache, use_cache=True)
                positions = positions + 1
        return torch.stack(steps, dim=1).tolist()


def of(model: Any) -> Virtual | None:
    """The virtual tokens of ``model`` when it is a PEFT prompt- or prefix-tuning model, else None."""
    config = getattr(model, "active_peft_config", None)
    if not getattr(config, "is_prompt_learning", False):
        return None
    prefix = config.peft_type.value == "PREFIX_TUNING"
    if not prefix and config.peft_type.value != "PROMPT_TUNING":
        from tunesmith.errors import TunesmithError

        raise TunesmithError(f"{config.peft_type.value} adapters are not supported: tunesmith's generation (chat, "
                             "evaluate, serve's batching engine) runs prompt- and prefix-tuning adapters only")
    return Virtual(model, model.get_base_model(), prefix, int(config.num_virtual_tokens))
