"""What every check reads: the records of all splits, their text views, lengths and settings."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from tunesmith.config.schema import Config
from tunesmith.data.records import Message, Record
from tunesmith.errors import RowError

SPLITS: tuple[str, ...] = ("train", "eval", "test")


class Encoded(Protocol):
    """What the tokenization engine returns for one chat (``EncodedChat``): ids and labels."""

    @property
    def input_ids(self) -> list[int]: ...

    @property
    def labels(self) -> list[int]: ...


LengthFn = Callable[[Sequence[Record]], Sequence[int]]


class TokenHooks(Protocol):
    """Tokenizer-backed hooks for the token checks (``tokens.TokenizerHooks`` is the real one)."""

    @property
    def stop_ids(self) -> frozenset[int]:
        """Token ids that close a turn (EOS, end-of-turn specials)."""
        ...

    def lengths(self, records: Sequence[Record]) -> Sequence[int]:
        """Token count of each record as it will be trained (template applied)."""
        ...

    def start_lengths(self, records: Sequence[Record]) -> Callable[[], Sequence[int]]:
        """``lengths`` started now, finished (and waited for) when the returned function is called."""
        ...

    def encode(self, record: Record) -> Encoded:
        """The templated record: input_ids and labels (-100 outside trained spans)."""
        ...

    def encode_many(self, records: Sequence[Record]) -> Sequence[Encoded | Exception]:
        """``encode`` of each record, the error it raised in its place (batched where it pays)."""
        ...

    def token_text(self, token_id: int) -> str:
        """How a token id reads, for messages."""
        ...


def _text(messages: Sequence[Message]) -> str:
    return "\n".join(_turn(m) for m in messages)


def _turn(m: Message) -> str:
    """A turn's text as the checks compare it: its content, then its tool calls (name and arguments), so two
    answers that call different functions are different answers."""
    if not m.tool_calls:
        return m.content
    calls = "\n".join(f"{c.name}({_arguments(c.arguments)})" for c in m.tool_calls)
    return f"{m.content}\n{calls}" if m.content else calls


def _arguments(arguments: dict[str, Any] | str) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments, sort_keys=True)


@dataclass(frozen=True)
class Views:
    """Per-record text views, aligned with ``AuditContext.records``.

    ``prompt`` is everything before the final answer (system and earlier turns included),
    ``response`` the final answer (preference: the chosen side; text: the document),
    ``rejected`` the rejected side, ``system`` the system prompt (None when absent).
    """

    prompt: Sequence[str]
    response: Sequence[str]
    rejected: Sequence[str]
    system: Sequence[str | None]
    first_user: Sequence[str]
    tool_answer: list[bool]
    kind: list[str]  # the record's kind (interned): what most checks ask first, without reading the record

    @classmethod
    def of(cls, records: Sequence[Record]) -> Views:
        """The views of ``records``; for records kept on disk (``data.store``) the texts are too."""
        from tunesmith.data.store import RowStore, on_disk

        texts = (lambda: RowStore()) if on_disk(records) else list  # type: ignore[var-annotated]
        prompt, response, rejected, system, first_user = texts(), texts(), texts(), texts(), texts()
        tool: list[bool] = []
        kind: list[str] = []
        for r in records:
            kind.append(sys.intern(r.kind))
            p, a, t = _split_answer(r)
            prompt.append(p)
            response.append(a)
            tool.append(t)
            rejected.append(_text(r.rejected))
            system.append(next((m.content for m in r.messages if m.role == "system"), None))
            first_user.append(next((m.content for m in r.messages if m.role == "user"), ""))
        return cls(prompt, response, rejected, system, first_user, tool, kind)  # type: ignore[arg-type]


def _split_answer(r: Record) -> tuple[str, str, bool]:
    """(prompt text, answer text, answer is a tool call) of one record."""
    if r.kind == "text":
        return "", r.text or "", False
    if r.kind == "preference":
        return _text(r.messages), _text(r.chosen), any(m.tool_calls for m in r.chosen)
    last = next((i for i in range(len(r.messages) - 1, -1, -1) if r.messages[i].role == "assistant"), None)
    if last is None:
        return _text(r.messages), "", False
    answer = r.messages[last]
    return _text(r.messages[:last]), _turn(answer), bool(answer.tool_calls)


@dataclass
class AuditContext:
    """The input of every check. ``lengths`` are token counts per record (estimated as
    characters / 4 when ``lengths_exact`` is False, i.e. no tokenizer was given); while they are
    still being computed (``pending_lengths``), the first read waits for them."""

    records: Sequence[Record]  # a list, or a view of records kept on disk (data.store)
    split: list[str]
    guidelines: Mapping[str, Any]
    config: Config | None = None
    errors: list[RowError] = field(default_factory=list)
    pending_lengths: Callable[[], Sequence[int]] | None = None
    lengths_exact: bool = False
    tokens: TokenHooks | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)
    _lengths: np.ndarray | None = None

    @property
    def lengths(self) -> np.ndarray:
        if self._lengths is None:
            pending, self.pending_lengths = self.pending_lengths, None
            self._lengths = np.asarray(pending() if pending else [], dtype=np.int64)
        return self._lengths

    @cached_property
    def views(self) -> Views:
        return Views.of(self.records)

    @cached_property
    def kinds(self) -> list[str]:
        """Each record's kind: ``views.kind`` when the views are made, else read from the records alone
        (the token checks need no text views; in a forked audit the checks that do ran elsewhere)."""
        if "views" in self.__dict__:
            return self.views.kind
        return [sys.intern(r.kind) for r in self.records]

    @cached_property
    def _by_split(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {s: [] for s in SPLITS}
        for i, s in enumerate(self.split):
            out[s].append(i)
        return out

    def indices(self, split: str) -> list[int]:
        """Record indices of one split."""
        return self._by_split[split]

    def present_splits(self) -> list[str]:
        return [s for s in SPLITS if self._by_split[s]]

    def rows(self, indices: Sequence[int] | np.ndarray) -> list[Record]:
        return [self.records[int(i)] for i in indices]

    def g(self, check: str) -> Mapping[str, Any]:
        """The thresholds of one check from guidelines.yaml."""
        return self.guidelines[check]


def estimate_lengths(records: Sequence[Record]) -> np.ndarray:
    """Token counts estimated as characters / 4 (used when no tokenizer is available)."""
    out = np.empty(len(records), dtype=np.int64)
    for i, r in enumerate(records):
        side = max(sum(len(m.content) for m in r.chosen), sum(len(m.content) for m in r.rejected))
        chars = len(r.text or "") + sum(len(m.content) for m in r.messages) + side
        out[i] = chars // 4 + 4 * (len(r.messages) + 1)
    return out
