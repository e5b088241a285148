"""``/v1/chat/completions`` and ``/v1/completions``: validate, queue, stream or collect, log."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tunesmith.serve import protocol as p
from tunesmith.serve.engine import Job, QueueFull
from tunesmith.serve.errors import APIError
from tunesmith.serve.models import ServedModel
from tunesmith.serve.sequence import Event, Params, Seq, TokenInfo
from tunesmith.serve.state import State

logger = logging.getLogger(__name__)


@dataclass
class Choice:
    text: str = ""
    tokens: list[TokenInfo] = field(default_factory=list)
    finish_reason: str | None = None
    completion_tokens: int = 0
    mean_logprob: float | None = None


@dataclass
class Generation:
    """One request in flight: its job, the events of its choices, and what goes into the log row."""

    state: State
    request_id: str
    endpoint: str  # 'chat.completions' | 'completions'
    served: ServedModel
    prompts: list[list[int]]
    params: Params
    n: int
    log_fields: dict[str, Any]
    stream: bool = False
    arrived: float = field(default_factory=time.time)
    choices: list[Choice] = field(default_factory=list)
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    job: Job | None = None
    first_token: float | None = None
    logged: bool = False

    async def start(self) -> None:
        """Queue the sequences (429 when the queue is full)."""
        # grammar matchers can take a while to build (and the first one per tokenizer ~1 s): not on the loop
        count, limit = len(self.prompts) * self.n, self.state.engine.max_batch_size
        if count > limit:
            raise APIError(400, f"n x prompts = {count} sequences; this server decodes at most {limit} together",
                           param="n")
        seqs = await asyncio.to_thread(self._seqs) if self.params.grammar else self._seqs()
        self.choices = [Choice() for _ in seqs]
        self.job = Job(seqs, self._receive, asyncio.get_running_loop())
        try:
            self.state.engine.submit(self.job)
        except QueueFull:
            raise APIError(429, f"the server is busy ({self.state.config.max_queue} requests waiting); retry shortly",
                           code="queue_full", headers={"Retry-After": "1"}) from None

    def _receive(self, events: list[Event]) -> None:
        for event in events:
            self.events.put_nowait(event)

    def _seqs(self) -> list[Seq]:
        seqs = []
        for k, prompt in enumerate(self.prompts):
            for j in range(self.n):
                matcher = (self.state.grammars.matcher(self.params.grammar, self.served.tokenizer, self.served.eos_ids)
                           if self.params.grammar else None)
                seqs.append(Seq(k * self.n + j, prompt, self.params, self.served, self.stream, matcher,
                                self.state.models.vocab_size))
        return seqs

    async def events_until_done(self) -> AsyncIterator[Event]:
        """Every event of every choice, until all have finished."""
        open_choices = len(self.choices)
        while open_choices:
            event = await self.events.get()
            if self.first_token is None and (event.text or event.tokens):
                self.first_token = time.time()
            choice = self.choices[event.index]
            choice.text += event.text
            choice.tokens += event.tokens
            if event.finish_reason is not None:
                choice.finish_reason = event.finish_reason
                choice.completion_tokens = event.completion_tokens
                choice.mean_logprob = event.mean_logprob
                open_choices -= 1
                if event.error:
                    self.cancel()  # the request has failed: its other choices stop too
                    raise APIError(500, event.error, code="engine_error")
            yield event

    async def collect(self, disconnected: asyncio.Future[Any]) -> None:
        """Wait for every choice; stop generating if the client goes away first."""
        async def drain() -> None:
            async for _ in self.events_until_done():
                pass

        task = asyncio.ensure_future(drain())
        done, _ = await asyncio.wait({task, disconnected}, return_when=asyncio.FIRST_COMPLETED)
        if task not in done:
            self.cancel()
            await task
        task.result()

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def cut_off(self) -> None:
        """The client went away mid-stream: choices not finished are 'cancelled', with the tokens generated so
        far (counted from the sequences: their finish events, which carry the counts, come after the reply)."""
        seqs = self.job.seqs if self.job is not None else []
        for choice, seq in zip(self.choices, seqs):
            if choice.finish_reason is None:
                logprobs = list(seq.logprobs)  # a copy: the engine thread may still append to it
                mean = sum(logprobs) / len(logprobs) if logprobs else None
                choice.finish_reason, choice.completion_tokens = "cancelled", len(logprobs)
                choice.mean_logprob = mean if mean is None or math.isfinite(mean) else None

    @property
    def prompt_tokens(self) -> int:
        return sum(len(prompt) for prompt in self.prompts)

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.choices)

    def usage(self) -> dict[str, int]:
        return p.usage(self.prompt_tokens, self.completion_tokens)

    async def log(self, wait: bool = True, error: APIError | None = None) -> None:
        """Write the log row, once (``error``: the request failed after its reply began, as a stream can);
        with ``wait``, return once it is committed (bounded by the config's timeout)."""
        if self.logged:
            return
        self.logged = True
        now = time.time()
        metrics = self.state.metrics
        metrics.latency.labels(self.endpoint).observe(now - self.arrived)
        if self.first_token is not None and self.stream:  # non-streaming replies arrive whole
            metrics.first_token.labels(self.endpoint).observe(self.first_token - self.arrived)
        metrics.prompt_tokens.inc(self.prompt_tokens)
        metrics.completion_tokens.inc(self.completion_tokens)
        first = self.choices[0]
        row = {
            **self.log_fields, "id": self.request_id, "created": self.arrived, "endpoint": self.endpoint,
            "status": error.status if error else 200, "error": error.message if error else None,
            "model": self.served.name, "adapter": self.served.name if self.served.parent else None,
            "reply": first.text, "finish_reason": first.finish_reason,
            "choices": json.dumps([{"index": i, "text": c.text, "finish_reason": c.finish_reason,
                                    "completion_tokens": c.completion_tokens, "mean_logprob": c.mean_logprob}
                                   for i, c in enumerate(self.choices)]),
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "latency_ms": round((now - self.arrived) * 1000, 3), "mean_logprob": first.mean_logprob,
        }
        future = self.state.log.write("requests", row)
        if wait:
            await committed(self.state, future)


async def committed(state: State, future: Any) -> None:
    """Wait for a log write, at most ``log_commit_timeout_s``: a slow or broken disk never holds a reply."""
    try:
        await asyncio.wait_for(asyncio.wrap_future(future), state.config.log_commit_timeout_s)
    except Exception as exc:  # timeout or SQLite error: reply anyway, count it
        state.metrics.log_failures.inc()
        logger.warning("request log: row not committed before the reply: %s", exc or type(exc).__name__)


def sse(data: dict[str, Any] | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode("utf-8")
