"""The normalised record: what every input format becomes.

Raw rows (any file format, any dataset layout) are normalised by ``tunesmith.data.formats``
into :class:`Record`. Everything downstream (audit, tokenization, training, evaluation)
reads only records, never raw rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tunesmith.errors import location

ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")
RecordKind = Literal["sft", "preference", "kto", "text"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call emitted by the assistant (OpenAI shape: name + JSON arguments)."""

    name: str
    arguments: dict[str, Any] | str

    def __reduce__(self) -> tuple[Any, ...]:  # pickled as constructor arguments: ~2x faster to load
        return ToolCall, (self.name, self.arguments)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True, slots=True)
class Message:
    """One chat turn. ``weight`` is the per-message loss weight (None = default)."""

    role: str
    content: str
    weight: float | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str | None = None
    name: str | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return Message, (self.role, self.content, self.weight, self.tool_calls, self.reasoning, self.name)

    def to_dict(self) -> dict[str, Any]:
        """The message as chat templates expect it (``apply_chat_template`` input)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.reasoning is not None:
            out["reasoning_content"] = self.reasoning
        if self.name is not None:
            out["name"] = self.name
        return out


@dataclass(frozen=True, slots=True)
class Source:
    """Where a record came from: file, 1-based row, and line when the file has lines."""

    file: str
    row: int
    line: int | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return Source, (self.file, self.row, self.line)

    def __str__(self) -> str:
        return location(self.file, self.row, self.line)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "row": self.row, "line": self.line}


def row_locations(sources: list[Source]) -> list[str]:
    """Each source as ``file:line``, made unique where rows share a line (a one-line JSON array:
    every element is ``file:1``): those get `` (row N)``. Evaluation names and pairs rows by these."""
    plain = [str(s) for s in sources]
    counts: dict[str, int] = {}
    for text in plain:
        counts[text] = counts.get(text, 0) + 1
    return [text if counts[text] == 1 else f"{text} (row {s.row})" for text, s in zip(plain, sources)]


@dataclass(frozen=True, slots=True)
class Record:
    """A normalised training example.

    - ``sft``: ``messages`` is the whole conversation (ends with an assistant turn).
    - ``preference``: ``messages`` is the shared prompt; ``chosen`` / ``rejected`` are the
      competing continuations (usually one assistant message each).
    - ``kto``: ``messages`` is the conversation, ``label`` True (desirable) / False.
    - ``text``: raw pretraining text in ``text``.

    ``fmt`` names the input format it came from; ``label`` also carries the class of a
    classification row; ``meta`` holds format-specific facts (e.g. ``abstention`` for RAG).
    """

    kind: RecordKind
    source: Source
    fmt: str
    messages: tuple[Message, ...] = ()
    tools: tuple[dict[str, Any], ...] = ()
    chosen: tuple[Message, ...] = ()
    rejected: tuple[Message, ...] = ()
    label: bool | str | None = None
    text: str | None = None
    weight: float = 1.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as constructor arguments (records kept on disk, ``data.store``, load ~2x faster
        than through the dataclass's slot state)."""
        return Record, (self.kind, self.source, self.fmt, self.messages, self.tools, self.chosen, self.rejected,
                        self.label, self.text, self.weight, self.meta)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (messages in chat-template shape, plus their ``weight`` when set)."""
        out: dict[str, Any] = {"kind": self.kind, "fmt": self.fmt, "source": self.source.to_dict()}
        for name, turns in (("messages", self.messages), ("chosen", self.chosen), ("rejected", self.rejected)):
            if turns:
                out[name] = [_message_dict(m) for m in turns]
        if self.tools:
            out["tools"] = list(self.tools)
        if self.label is not None:
            out["label"] = self.label
        if self.text is not None:
            out["text"] = self.text
        out["weight"] = self.weight
        if self.meta:
            out["meta"] = self.meta
        return out


def _message_dict(message: Message) -> dict[str, Any]:
    out = message.to_dict()
    if message.weight is not None:
        out["weight"] = message.weight
    return out
