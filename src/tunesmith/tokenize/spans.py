"""Find, in a rendered conversation, the characters each assistant turn generates.

Template-independent: no ``{% generation %}`` markers, no role strings. For assistant
message ``i`` the conversation is rendered three ways:

- ``P`` = ``messages[:i]`` with the generation prompt (what the model sees before it writes),
- ``F`` = ``messages[:i+1]`` (the turn rendered as the last one),
- ``R`` = the whole conversation.

The turn's generated text starts where ``P`` and ``F`` diverge (whitespace-tolerant, see
``_prompt_end``) and ends where ``F`` and ``R`` diverge; inside it the trained part runs
through the last end-of-turn token (a special token or EOS). When prefix renders disagree
with ``R`` (templates that rewrite earlier turns, inject text only into the last turn, ...),
the content is located instead by rendering ``R`` with that message's content replaced by a
marker; the closing is then the first end-of-turn token that follows the content. Every
span is checked to contain the message's content (and no header text before it); when no
method yields such a span, :class:`TemplateMismatch` is raised.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunesmith.errors import TunesmithError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

MARKER = "\ue000tunesmith-content\ue001"


class TemplateMismatch(TunesmithError):
    """The chat template rejected a conversation, or a trained span could not be located."""


@dataclass(frozen=True)
class CharSpan:
    """Trained characters ``[start, end)`` of assistant message ``message``.

    ``closed`` is True when the span ends with an end-of-turn token the template wrote.
    """

    message: int
    start: int
    end: int
    closed: bool


def render(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[dict[str, Any]],
    tools: Sequence[dict[str, Any]] = (),
    add_generation_prompt: bool = False,
) -> str:
    """The chat template applied to ``messages``; template errors become TemplateMismatch."""
    try:
        text = tokenizer.apply_chat_template(
            list(messages), tools=list(tools) or None, tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except Exception as exc:  # a user template may raise anything (raise_exception, Undefined, ...)
        raise TemplateMismatch(f"the chat template cannot render this conversation: {exc}") from None
    return str(text)


def render_many(
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Sequence[dict[str, Any]]],
    tools: Sequence[Sequence[dict[str, Any]]],
    add_generation_prompt: bool = False,
) -> list[str | None]:
    """``render(tokenizer, conversations[k], tools[k], add_generation_prompt)`` for every k, None where the template
    raises. Neighbours with the same tools are rendered in one ``apply_chat_template`` call
    (its batch form: the same template and arguments per conversation, less overhead per row);
    a batch the template rejects is rendered row by row."""
    out: list[str | None] = []
    start = 0
    while start < len(conversations):
        end = start + 1
        while end < len(conversations) and list(tools[end]) == list(tools[start]):
            end += 1
        try:
            texts = tokenizer.apply_chat_template(
                [list(c) for c in conversations[start:end]], tools=list(tools[start]) or None, tokenize=False,
                add_generation_prompt=add_generation_prompt,
            )
            out += [str(t) for t in texts]
        except Exception:  # some conversation is rejected: find which, row by row
            out += [_render_or_none(tokenizer, c, tools[start], add_generation_prompt)
                    for c in conversations[start:end]]
        start = end
    return out


def _render_or_none(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]],
    add_generation_prompt: bool = False,
) -> str | None:
    try:
        return render(tokenizer, messages, tools, add_generation_prompt)
    except TemplateMismatch:
        return None


def assistant_spans(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[dict[str, Any]],
    tools: Sequence[dict[str, Any]],
    indices: Sequence[int],
    full: str,
    closers: Sequence[tuple[int, int]],
    prompts: Mapping[int, str] | None = None,
) -> list[CharSpan]:
    """Trained character spans of the assistant messages at ``indices`` within ``full``.

    ``closers`` are the character ranges of end-of-turn tokens in ``full``, in order; ``prompts``
    the renders of ``messages[:i]`` with the generation prompt when the caller made them already.
    """
    spans = []
    for i in indices:
        try:
            span = _by_prefix(tokenizer, messages, tools, i, full, closers, (prompts or {}).get(i))
        except TemplateMismatch:  # the template rejects a shortened conversation
            span = None
        if span is None or not _holds_content(messages[i], full, span):
            span = _by_marker(tokenizer, messages, tools, i, full, closers)
        if span is None or not _holds_content(messages[i], full, span):
            raise TemplateMismatch(
                f"message {i} (assistant): cannot locate its text in the rendered conversation; the chat "
                "template renders this turn differently depending on what follows it and its content "
                "could not be found by substitution either"
            )
        if spans and span.start < spans[-1].end:
            raise TemplateMismatch(f"message {i} (assistant): its span overlaps the previous assistant turn")
        spans.append(span)
    return spans


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix (``os.path.commonprefix``'s), by bisection on slice equality."""
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    while lo < hi:  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _prompt_end(prompt: str, turn: str) -> int:
    """Where the generated text starts in ``turn``: past the common prefix with ``prompt``, then
    past the rest of the generation prompt matched while ignoring whitespace (templates often
    indent or space the generation prompt differently from a rendered turn)."""
    i = j = _common_prefix(prompt, turn)
    while True:
        i2 = _skip_space(prompt, i)
        j2 = _skip_space(turn, j)
        if i2 == len(prompt):  # the prompt's trailing whitespace covers as much of the turn's
            return j + min(i2 - i, j2 - j)
        if j2 == len(turn) or prompt[i2] != turn[j2]:
            return j
        i, j = i2 + 1, j2 + 1


def _skip_space(text: str, k: int) -> int:
    while k < len(text) and text[k].isspace():
        k += 1
    return k


def _by_prefix(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[dict[str, Any]],
    tools: Sequence[dict[str, Any]],
    i: int,
    full: str,
    closers: Sequence[tuple[int, int]],
    prompt: str | None = None,
) -> CharSpan | None:
    if i == 0:
        return None
    if prompt is None:
        prompt = render(tokenizer, messages[:i], tools, add_generation_prompt=True)
    turn = full if i == len(messages) - 1 else render(tokenizer, messages[: i + 1], tools)
    start, end = _prompt_end(prompt, turn), _common_prefix(turn, full)
    if end <= start:
        return None
    inside = [c for c in closers if c[0] >= start and c[1] <= end]
    if inside:
        return CharSpan(i, start, inside[-1][1], True)
    text = full[start:end]
    return CharSpan(i, start, start + len(text.rstrip()), False)


def _by_marker(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[dict[str, Any]],
    tools: Sequence[dict[str, Any]],
    i: int,
    full: str,
    closers: Sequence[tuple[int, int]],
) -> CharSpan | None:
    marked = [dict(m) for m in messages]
    marked[i]["content"] = MARKER
    try:
        text = render(tokenizer, marked, tools)
    except TemplateMismatch:
        return None
    if text.count(MARKER) != 1:
        return None
    before, after = text.split(MARKER)
    if not (full.startswith(before) and full.endswith(after) and len(before) + len(after) <= len(full)):
        return None
    start, content_end = len(before), len(full) - len(after)
    k = bisect_left([c[0] for c in closers], content_end)
    if k < len(closers) and not full[content_end : closers[k][0]].strip():
        return CharSpan(i, start, closers[k][1], True)
    if i == len(messages) - 1 and not after.strip():
        return CharSpan(i, start, content_end, False)
    return None


def _norm(text: str) -> str:
    return " ".join(text.split())


def _holds_content(message: dict[str, Any], full: str, span: CharSpan) -> bool:
    """The span contains the message content, and nothing but whitespace precedes it
    unless the message carries reasoning or tool calls the template renders first."""
    content = message.get("content")
    if not isinstance(content, str) or not content.strip():
        return span.end > span.start
    text = full[span.start : span.end]
    if _norm(content) not in _norm(text):
        return False
    head = text[: max(text.find(content.strip()), 0)]
    if message.get("reasoning_content") or message.get("tool_calls"):
        return True
    return not any(ch.isalnum() for ch in head)
