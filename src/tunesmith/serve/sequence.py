"""One sequence being generated: its sampling parameters, tokens, text, logprobs and stop rules."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from tunesmith.serve.grammar import allowed
from tunesmith.serve.models import ServedModel
from tunesmith.serve.tokenbytes import token_text

# temperatures below this decode greedily, as vLLM's do: dividing the logits by 1e-40 overflows them to inf
# and the softmax to NaN
GREEDY_BELOW = 1e-5


@dataclass(frozen=True)
class Params:
    """Sampling parameters of one request (already validated)."""

    max_tokens: int
    temperature: float = 1.0  # below GREEDY_BELOW: greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # None: off; k: the chosen token's logprob plus the k most likely
    grammar: str | None = None


@dataclass(frozen=True)
class TokenInfo:
    """A generated token with its log-probability under the model (before temperature, top_p, grammar)."""

    id: int
    text: str  # tokenbytes.token_text: its text, or ``bytes:\\xe4`` for part of a UTF-8 character
    logprob: float
    top: tuple[tuple[str, float, bytes], ...] = ()  # (text, logprob, bytes) of the k most likely
    bytes: bytes = b""


@dataclass
class Event:
    """What one engine step produced for one choice: new text (and tokens), or the end."""

    index: int
    text: str = ""
    tokens: list[TokenInfo] = field(default_factory=list)
    finish_reason: str | None = None
    completion_tokens: int = 0
    mean_logprob: float | None = None
    error: str | None = None


class Seq:
    """Generation state of one choice. Its events collect in ``outbox`` (the engine delivers them once
    per step); without ``stream`` only the final event is produced, carrying the whole text."""

    def __init__(self, index: int, prompt: list[int], params: Params, served: ServedModel,
                 stream: bool = True, matcher: Any = None, vocab_size: int = 0):
        self.index, self.prompt, self.params, self.served, self.stream = index, prompt, params, served, stream
        self.matcher, self.vocab_size = matcher, vocab_size
        self.outbox: list[Event] = []
        self._held: Event | None = None  # not streaming: text and tokens so far
        self.tokens: list[int] = []
        self.logprobs: list[float] = []
        self.text = ""  # decoded reply so far (stop string cut off once found)
        self.sent = 0  # characters of ``text`` already emitted
        self.finish_reason: str | None = None
        self.generator: torch.Generator | None = None
        self.greedy = params.temperature < GREEDY_BELOW
        if not self.greedy:
            self.generator = torch.Generator()
            if params.seed is not None:
                self.generator.manual_seed(params.seed + index)
            else:
                self.generator.seed()
        self._stops = frozenset(served.eos_ids)

    def choose(self, logits: torch.Tensor) -> int:
        """The next token: greedy at temperature 0 (below GREEDY_BELOW), else temperature + top_p sampling;
        grammar-masked."""
        if self.matcher is not None:
            logits = logits.masked_fill(~allowed(self.matcher, self.vocab_size), float("-inf"))
        if self.greedy:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits.float() / self.params.temperature, dim=-1)
        if self.params.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            outside = sorted_probs.cumsum(-1) - sorted_probs > self.params.top_p  # keep the first that crosses
            probs = probs.scatter(0, order[outside], 0.0)
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def accept(self, token: int, logprobs: torch.Tensor, max_len: int) -> None:
        """Record ``token`` (``logprobs``: the model's log-softmax row), emit the new text, decide whether to stop."""
        self.tokens.append(token)
        self.logprobs.append(float(logprobs[token]))
        info = self._info(token, logprobs) if self.params.logprobs is not None else None
        if self.matcher is not None:
            self.matcher.consume_token(token)
        if token in self._stops:
            self._finish("stop", [info] if info else [])
            return
        text = self.served.tokenizer.decode(self._reply_ids(), skip_special_tokens=True)
        cut = self._stop_at(text)
        if cut is not None:
            self.text = text[:cut]
            self._finish("stop", [info] if info else [])
            return
        self.text = text
        if len(self.tokens) >= self.params.max_tokens or len(self.prompt) + len(self.tokens) >= max_len:
            self._finish("length", [info] if info else [])
            return
        safe = len(text) - (max(map(len, self.params.stop)) - 1 if self.params.stop else 0)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 character: wait for its next byte
            safe = min(safe, len(text) - 1)
        delta = text[self.sent:safe] if safe > self.sent else ""
        self.sent = max(self.sent, safe)
        if delta or info:
            self.emit(Event(self.index, delta, [info] if info else []))

    def emit(self, event: Event) -> None:
        if self._held is not None:
            event.text, event.tokens = self._held.text + event.text, self._held.tokens + event.tokens
            self._held = None
        if self.stream or event.finish_reason is not None:
            self.outbox.append(event)
        else:
            self._held = event

    def cancel(self) -> None:
        self.finish_reason = "cancelled"

    def fail(self, message: str) -> None:
        """End this sequence with an error (its request is answered 500; the batch goes on)."""
        self.finish_reason = "error"
        self.emit(Event(self.index, finish_reason="error", completion_tokens=len(self.tokens),
                        mean_logprob=self.mean_logprob, error=message))

    @property
    def mean_logprob(self) -> float | None:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else None

    def _reply_ids(self) -> list[int]:
        return [t for t in self.tokens if t not in self._stops]

    def _stop_at(self, text: str) -> int | None:
        found = [text.find(s, max(0, self.sent - len(s))) for s in self.params.stop if s]
        found = [i for i in found if i >= 0]
        return min(found) if found else None

    def _finish(self, reason: str, tokens: list[TokenInfo]) -> None:
        self.finish_reason = reason
        mean = self.mean_logprob
        self.emit(Event(self.index, self.text[self.sent:], tokens, reason, len(self.tokens),
                        mean if mean is None or math.isfinite(mean) else None))
        self.sent = len(self.text)

    def _info(self, token: int, logprobs: torch.Tensor) -> TokenInfo:
        raw = self.served.token_bytes  # each token's own bytes: decoding part of a character alone gives U+FFFD
        k = self.params.logprobs or 0
        top: tuple[tuple[str, float, bytes], ...] = ()
        if k:
            values, ids = torch.topk(logprobs, k)
            top = tuple((token_text(raw(int(i))), float(v), raw(int(i))) for v, i in zip(values, ids))
        return TokenInfo(token, token_text(raw(token)), float(logprobs[token]), top, raw(token))
