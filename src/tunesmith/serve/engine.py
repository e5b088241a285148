"""The batching engine: one thread that decodes every active sequence in one forward per step.

Requests wait in a bounded queue (full -> :class:`QueueFull`, answered 429). Between steps the
engine admits waiting requests up to ``max_batch_size`` sequences, prefills them in one padded
forward, appends their KV cache to the running batch (continuous batching), and drops sequences
that finished or whose client went away (``Job.cancel``). Adapter loads and unloads run on this
thread between steps (``call``), so the weights never change under a forward.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import torch

from tunesmith.serve.kvbatch import KVBatch
from tunesmith.serve.models import BASE, Models
from tunesmith.serve.sequence import Event, Seq

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """The waiting queue is at ``max_queue``."""


class Job:
    """The sequences of one request (``n`` choices, or several prompts), admitted together.

    ``sink(events)`` runs on the event loop ``loop`` (one wake-up of that loop per engine step
    for all its jobs, never one per token); without a loop it is called on the engine thread."""

    def __init__(self, seqs: list[Seq], sink: Callable[[list[Event]], None],
                 loop: asyncio.AbstractEventLoop | None = None):
        self.seqs, self.sink, self.loop = seqs, sink, loop
        self.cancelled = False
        self.created = time.monotonic()

    def cancel(self) -> None:
        """Stop generating (the client disconnected); safe to call from any thread."""
        self.cancelled = True


class Engine:
    def __init__(self, models: Models, max_batch_size: int, max_queue: int):
        self.models = models
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.waiting: collections.deque[Job] = collections.deque()
        self.active: list[Seq] = []
        self.jobs: dict[int, Job] = {}  # id(seq) -> its job, for cancellation
        self.batch: KVBatch | None = None
        self.steps = 0
        self.admitting: list[Seq] = []
        self._touched: list[tuple[Seq, Job]] = []  # sequences that may have events to deliver
        self._calls: collections.deque[tuple[Callable[[], Any], Future[Any]]] = collections.deque()
        self._wake = threading.Condition()
        self._stopping = False
        tok = models.table[models.base_name].tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else models.table[models.base_name].eos_ids[0]
        self._thread = threading.Thread(target=self._loop, name="tunesmith-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=30)

    @property
    def queue_depth(self) -> int:
        return len(self.waiting)

    def submit(self, job: Job) -> None:
        """Queue ``job``; raises QueueFull when ``max_queue`` requests already wait."""
        with self._wake:
            if len(self.waiting) >= self.max_queue:
                raise QueueFull()
            for seq in job.seqs:
                seq.served.users += 1
            self.waiting.append(job)
            self._wake.notify()

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn`` on the engine thread between two steps; its result or exception lands in the future."""
        done: Future[Any] = Future()
        with self._wake:
            self._calls.append((fn, done))
            self._wake.notify()
        return done

    def _loop(self) -> None:
        # inference mode (this thread only), as infer.generate runs: no autograd or version-counter
        # bookkeeping on the KV cache and activations
        with torch.inference_mode():
            self._steps()

    def _steps(self) -> None:
        while True:
            with self._wake:
                while not (self._stopping or self.waiting or self.active or self._calls):
                    self._wake.wait()
                if self._stopping:
                    self._fail_all("the server is shutting down", waiting=True)
                    return
            try:
                self._run_calls()
                self._drop_cancelled()
                self._admit()
                if self.active:
                    self._decode()
            except Exception as exc:  # a bug must fail the requests in flight, never kill the engine
                logger.exception("engine step failed")
                self._fail_all(internal_error(exc), waiting=False)  # the queued ones have not run: they go on
            self._flush()

    def _flush(self) -> None:
        """Deliver the step's events: one call per event loop, carrying every job's events."""
        by_loop: dict[Any, list[tuple[Job, list[Event]]]] = {}
        for seq, job in self._touched:
            if seq.outbox:
                events, seq.outbox = seq.outbox, []
                by_loop.setdefault(job.loop, []).append((job, events))
        self._touched = []
        for loop, items in by_loop.items():
            if loop is None:
                _deliver(items)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(_deliver, items)

    def _run_calls(self) -> None:
        while self._calls:
            with self._wake:
                fn, done = self._calls.popleft()
            try:
                done.set_result(fn())
            except Exception as exc:
                done.set_exception(exc)

    def _admit(self) -> None:
        jobs: list[Job] = []
        rows = len(self.active)
        with self._wake:
            while self.waiting and rows + len(self.waiting[0].seqs) <= self.max_batch_size:
                job = self.waiting.popleft()
                if job.cancelled:
                    self._release(job.seqs, "cancelled", job)
                    continue
                for seq in job.seqs:
                    self.jobs[id(seq)] = job
                jobs.append(job)
                rows += len(job.seqs)
        if jobs:
            self._prefill(jobs)

    def _prefill(self, jobs: list[Job]) -> None:
        """Prefill the admitted jobs together and add them to the running batch. If their forward pass
        raises (one prompt the model cannot take, memory), the running batch is untouched: a single job
        fails alone, several are tried one by one so that only the one that cannot run fails."""
        new = [s for job in jobs for s in job.seqs]
        self.admitting = new  # failed with the active ones if a later part of the admission raises
        try:
            batch, logits = KVBatch.prefill(self.models.runner, [s.prompt for s in new], self.pad_id,
                                            self._adapters(new), self.models.virtual)
        except Exception as exc:
            self.admitting = []
            if len(jobs) > 1:
                for job in jobs:
                    self._prefill([job])
                return
            logger.exception("prefill failed")
            self._fail_seqs(new, internal_error(exc))
            return
        keep = self._advance(new, logits)
        self.admitting = []
        if keep:
            batch.keep(keep)
            if self.batch is None:
                self.batch = batch
            else:
                self.batch.extend(batch)
            self.active += [new[i] for i in keep]

    def _decode(self) -> None:
        assert self.batch is not None
        logits = self.batch.step(self.models.runner, [s.tokens[-1] for s in self.active], self._adapters(self.active))
        self.steps += 1
        keep = self._advance(self.active, logits)
        self._shrink(keep)

    def _advance(self, seqs: list[Seq], logits: torch.Tensor) -> list[int]:
        """Choose and record each row's next token; the rows that go on."""
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        keep = []
        for row, seq in enumerate(seqs):
            self._touched.append((seq, self.jobs[id(seq)]))
            try:
                seq.accept(seq.choose(logits[row]), logprobs[row], self.models.max_len)
            except Exception as exc:  # this sequence's sampling or grammar: it fails alone, the others go on
                logger.exception("sampling one sequence failed")
                seq.fail(internal_error(exc))
            if seq.finish_reason is None:
                keep.append(row)
            else:
                self._release([seq], None)
        return keep

    def _shrink(self, keep: list[int]) -> None:
        if len(keep) == len(self.active):
            return
        self.active = [self.active[i] for i in keep]
        if not self.active:
            self.batch = None
        else:
            assert self.batch is not None
            self.batch.keep(keep)

    def _drop_cancelled(self) -> None:
        keep = []
        for row, seq in enumerate(self.active):
            if self.jobs[id(seq)].cancelled:
                self._release([seq], "cancelled")
            else:
                keep.append(row)
        self._shrink(keep)

    def _release(self, seqs: list[Seq], reason: str | None, job: Job | None = None) -> None:
        for seq in seqs:
            owner = job or self.jobs.get(id(seq))
            if owner is not None:
                self._touched.append((seq, owner))
            if reason is not None:
                seq.cancel()
                seq.emit(Event(seq.index, finish_reason=reason, completion_tokens=len(seq.tokens),
                               mean_logprob=seq.mean_logprob))
            self.jobs.pop(id(seq), None)
            seq.served.users -= 1
        self.models.collect()

    def _fail_all(self, message: str, waiting: bool) -> None:
        """Fail the running sequences (their batch's state is unknown after an error) and, when
        ``waiting``, the queued ones too (shutdown)."""
        pending: list[tuple[Seq, Job]] = []
        if waiting:
            with self._wake:
                pending = [(s, job) for job in self.waiting for s in job.seqs]
                self.waiting.clear()
        running = [(s, self.jobs[id(s)]) for s in [*self.active, *self.admitting] if id(s) in self.jobs]
        self._fail_pairs([*running, *pending], message)
        self.active, self.admitting, self.batch = [], [], None
        self._flush()

    def _fail_seqs(self, seqs: list[Seq], message: str) -> None:
        self._fail_pairs([(s, self.jobs[id(s)]) for s in seqs if id(s) in self.jobs], message)

    def _fail_pairs(self, pairs: list[tuple[Seq, Job]], message: str) -> None:
        for seq, job in pairs:
            self._touched.append((seq, job))
            if seq.finish_reason is None:
                seq.finish_reason = "error"
                seq.emit(Event(seq.index, finish_reason="error", error=message))
            self.jobs.pop(id(seq), None)
            seq.served.users -= 1

    def _adapters(self, seqs: list[Seq]) -> list[str] | None:
        if not self.models.is_peft or self.models.virtual is not None:  # prompt learning: no adapter layers
            return None
        return [s.served.adapter or BASE for s in seqs]


def internal_error(exc: Exception) -> str:
    return f"internal error: {type(exc).__name__}: {exc}"


def _deliver(items: list[tuple[Job, list[Event]]]) -> None:
    for job, events in items:
        job.sink(events)
