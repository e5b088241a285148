"""Sample generations during training: a few validation prompts answered greedily at every
evaluation (or every quarter of the run when there is no validation data, from training prompts),
logged to metrics.jsonl (``samples``, ``stop_rate``) and the console. A model that stops emitting
its end-of-turn token shows up while it trains, not after (``stop_rate`` falls)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from transformers import TrainerCallback

from tunesmith.data.records import Message, Record


def _chosen(records: Sequence[Record], count: int) -> list[tuple[tuple[Message, ...], str]]:
    """The first ``count`` conversations of ``records`` up to (not including) their last assistant
    turn, each with that turn's text (the reference reply)."""
    out: list[tuple[tuple[Message, ...], str]] = []
    for record in records:
        messages = tuple(record.messages)
        last = max((k for k, m in enumerate(messages) if m.role == "assistant"), default=len(messages))
        if messages[:last] and messages[last - 1].role == "user":
            out.append((messages[:last], messages[last].content if last < len(messages) else ""))
        if len(out) == count:
            break
    return out


def prompts(records: Sequence[Record], count: int) -> list[tuple[Message, ...]]:
    """The first ``count`` conversations of ``records`` up to (not including) their last assistant turn."""
    return [conversation for conversation, _ in _chosen(records, count)]


# the sampled replies may run this many tokens past the longest reference reply, and at least
# SAMPLE_MIN_TOKENS / at most SAMPLE_MAX_TOKENS in all: a reply cut off by the budget would read
# as "never stops" in the stop rate
SAMPLE_MARGIN, SAMPLE_MIN_TOKENS, SAMPLE_MAX_TOKENS = 8, 48, 512


def reply_budget(tokenizer: Any, records: Sequence[Record], count: int) -> int:
    """``max_new_tokens`` for the samples ``prompts(records, count)`` picks: room for the longest
    reference reply among them (so a model that learned to stop is seen stopping)."""
    longest = max((len(tokenizer(reply, add_special_tokens=False)["input_ids"])
                   for _, reply in _chosen(records, count)), default=0)
    return min(SAMPLE_MAX_TOKENS, max(SAMPLE_MIN_TOKENS, longest + SAMPLE_MARGIN))


class SampleGenerations(TrainerCallback):
    """Generates ``conversations`` at each evaluation (``on_evaluate``), or ``per_run`` times in the run."""

    def __init__(self, tokenizer: Any, conversations: Sequence[tuple[Message, ...]], eos_ids: Sequence[int],
                 write: Callable[[dict[str, Any]], None], say: Callable[[str], None], *, source: str,
                 system_prompt: str | None = None, per_run: int | None = None, max_new_tokens: int = 48,
                 autocast: torch.dtype | None = None):
        """``autocast``: the 16-bit dtype training computes in (mixed precision), or None for fp32. The
        samples are generated under that autocast, as the training forward runs: with bf16 frozen
        weights (``train.speed``) the model cannot run without it."""
        self.tokenizer, self.conversations, self.eos_ids = tokenizer, list(conversations), list(eos_ids)
        self.write, self.say, self.source = write, say, source
        self.system_prompt, self.per_run, self.max_new_tokens = system_prompt, per_run, max_new_tokens
        self.autocast = autocast
        self.every: int | None = None
        self.done: set[int] = set()

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if self.per_run:
            self.every = max(1, int(state.max_steps or 0) // self.per_run)
        return control

    def on_step_end(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        if self.every and state.global_step % self.every == 0 and model is not None:
            self.sample(model, state.global_step)
        return control

    def on_evaluate(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        if not self.per_run and model is not None:
            self.sample(model, state.global_step)
        return control

    def sample(self, model: Any, step: int) -> dict[str, Any] | None:
        from tunesmith.infer.generate import generate_details

        if step in self.done or not self.conversations:
            return None
        self.done.add(step)
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device.type
        mixed = torch.autocast(device, dtype=self.autocast) if self.autocast is not None else nullcontext()
        try:
            with mixed:
                replies = generate_details(model, self.tokenizer, self.conversations, eos_ids=self.eos_ids,
                                           system_prompt=self.system_prompt, max_new_tokens=self.max_new_tokens)
        finally:
            model.train(was_training)
        stopped = sum(1 for r in replies if r.finish_reason == "stop")
        record = {"step": step, "samples": [
            {"prompt": conv[-1].content, "reply": r.text, "finish_reason": r.finish_reason, "tokens": r.tokens}
            for conv, r in zip(self.conversations, replies)], "stop_rate": stopped / len(replies),
            "samples_from": self.source}
        self.write(record)
        first = record["samples"][0]
        self.say(f"samples at step {step}: {stopped}/{len(replies)} stopped on an end-of-turn token within "
                 f"{self.max_new_tokens} tokens; "
                 f"{first['prompt'][:40]!r} -> {first['reply'][:60]!r}")
        return record
