"""Batched greedy generation that renders prompts exactly as training rendered them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tunesmith.data.records import Message
from tunesmith.infer import virtual
from tunesmith.infer.cache import GenerationCache
from tunesmith.tokenize.spans import render


@dataclass(frozen=True)
class Generation:
    """One reply: its text (up to the first stop token), why generation ended, and its length in tokens.

    ``finish_reason`` is ``"stop"`` when the model emitted a stop token and ``"length"`` when it
    ran into ``max_new_tokens`` first (the names OpenAI-compatible servers use)."""

    text: str
    finish_reason: Literal["stop", "length"]
    tokens: int


def prompt_ids(tokenizer: Any, messages: Sequence[Message], system_prompt: str | None = None,
               tools: Sequence[dict[str, Any]] = ()) -> list[int]:
    """Token ids of the generation prompt: the training template's render of ``messages`` and
    ``tools`` (with ``system_prompt`` prepended when they have no system turn, as training does)
    up to where the assistant's reply starts."""
    from tunesmith.tokenize.rows import with_system_prompt

    turns = [m.to_dict() for m in with_system_prompt(tuple(messages), system_prompt)]
    text = render(tokenizer, turns, tools, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def generate(model: Any, tokenizer: Any, conversations: Sequence[Sequence[Message]], *, eos_ids: Sequence[int],
             system_prompt: str | None = None, max_new_tokens: int = 128, batch_size: int = 32,
             tools: Sequence[Sequence[dict[str, Any]]] | None = None) -> list[str]:
    """Greedy replies to ``conversations`` (each ends with a user turn; ``tools[i]`` its tool list), in input order.

    Prompts are sorted by length and left-padded in batches, so padding stays small.
    """
    return [g.text for g in generate_details(model, tokenizer, conversations, eos_ids=eos_ids,
                                             system_prompt=system_prompt, max_new_tokens=max_new_tokens,
                                             batch_size=batch_size, tools=tools)]


def generate_details(model: Any, tokenizer: Any, conversations: Sequence[Sequence[Message]], *,
                     eos_ids: Sequence[int], system_prompt: str | None = None, max_new_tokens: int = 128,
                     batch_size: int = 32, tools: Sequence[Sequence[dict[str, Any]]] | None = None,
                     cache: GenerationCache | None = None, share_prefix: bool = True) -> list[Generation]:
    """``generate`` with each reply's finish reason and token count (for generation-health metrics).

    With ``cache`` (the model's ``GenerationCache``) replies stored earlier are reused and only
    the other prompts are generated (and stored). ``share_prefix`` prefills the token prefix a
    batch's prompts share once (see ``_generate_batch``)."""
    tool_lists = tools if tools is not None else [()] * len(conversations)
    prompts = [prompt_ids(tokenizer, conv, system_prompt, t) for conv, t in zip(conversations, tool_lists)]
    replies: list[Generation | None] = [None] * len(prompts)
    keys: list[str] = []
    if cache is not None:
        keys = [cache.key(p, max_new_tokens, eos_ids) for p in prompts]
        stored = cache.get(keys)
        replies = [Generation(*stored[k]) if k in stored else None for k in keys]
    todo = [i for i, r in enumerate(replies) if r is None]
    for i, reply in zip(todo, _generate_ids(model, tokenizer, [prompts[i] for i in todo], eos_ids,
                                            max_new_tokens, batch_size, share_prefix)):
        replies[i] = reply
    if cache is not None and todo:
        cache.put({keys[i]: (r.text, r.finish_reason, r.tokens) for i in todo if (r := replies[i]) is not None})
    return [r for r in replies if r is not None]


def _generate_ids(model: Any, tokenizer: Any, prompts: list[list[int]], eos_ids: Sequence[int],
                  max_new_tokens: int, batch_size: int, share_prefix: bool = True) -> list[Generation]:
    """Greedy replies to token-id prompts, sorted by length and batched (see ``_generate_batch``)."""
    from transformers import GenerationConfig

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    # a fresh config: greedy means greedy, whatever sampling settings the model folder carries
    greedy = GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=list(eos_ids),
                              pad_token_id=pad)
    replies: list[Generation | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        for i, ids in zip(batch, _generate_batch(model, [prompts[i] for i in batch], pad, greedy, share_prefix)):
            replies[i] = _reply(tokenizer, ids, eos_ids)
    return [r for r in replies if r is not None]


# a shared prefix shorter than this is prefilled with each row, as before
_MIN_SHARED_PREFIX = 8


def shared_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix every prompt starts with, leaving each prompt at least one token of its own."""
    limit = min(len(p) for p in prompts) - 1
    first = prompts[0]
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


def _generate_batch(model: Any, prompts: list[list[int]], pad: int, greedy: Any,
                    share_prefix: bool = True) -> list[list[int]]:
    """The generated ids of one batch.

    The prefix every prompt shares (a chat template's system turn, typically) is prefilled once and
    its key/value cache copied to every row; each row's own tokens follow it, padded in the middle
    (masked out, positions counted from the mask). Equal to prefilling each row whole up to
    floating-point rounding; a model without a dynamic cache, one prompt, or a short shared prefix
    takes the plain left-padded path. A prompt- or prefix-tuning model is not run through ``model.generate``
    (PEFT's forward would put its virtual tokens in front of every decode step, or lose them) but greedily
    on its transformer with the virtual tokens prefilled once, as training placed them (``infer.virtual``)."""
    import torch

    prompt_learning = virtual.of(model)
    if prompt_learning is not None:
        return prompt_learning.greedy(prompts, pad, list(greedy.eos_token_id), greedy.max_new_tokens)
    shared = shared_prefix(prompts) if share_prefix and len(prompts) > 1 else 0
    cache = _prefix_cache(model, prompts[0][:shared], len(prompts)) if shared >= _MIN_SHARED_PREFIX else None
    if cache is None:
        shared = 0
    rest = [p[shared:] for p in prompts]
    width = max(len(r) for r in rest)
    ids = torch.tensor([prompts[0][:shared] + [pad] * (width - len(r)) + r for r in rest])
    mask = torch.tensor([[1] * shared + [0] * (width - len(r)) + [1] * len(r) for r in rest])
    extra = {} if cache is None else {"cache": cache}
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=greedy, **extra)
    return [out[row, shared + width:].tolist() for row in range(len(prompts))]


def _prefix_cache(model: Any, prefix: list[int], rows: int) -> Any:
    """The key/value cache of ``prefix``, repeated for ``rows`` rows; None when the model has no
    dynamic cache. (A PEFT prompt-learning model never gets here: ``_generate_batch`` runs it through
    ``infer.virtual``.)"""
    import torch
    from transformers import DynamicCache

    if model.config.is_encoder_decoder or not getattr(model, "_supports_default_dynamic_cache", lambda: False)():
        return None
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(input_ids=torch.tensor([prefix]), cache=cache, use_cache=True)
    cache.batch_repeat_interleave(rows)
    return cache


def _reply(tokenizer: Any, ids: list[int], eos_ids: Sequence[int]) -> Generation:
    """The text up to the first stop token (what a server would return) and why it ended."""
    stops = set(eos_ids)
    end = next((k for k, t in enumerate(ids) if t in stops), None)
    kept = ids if end is None else ids[:end]
    text = str(tokenizer.decode(kept, skip_special_tokens=True)).strip()
    return Generation(text, "length" if end is None else "stop", len(kept))
