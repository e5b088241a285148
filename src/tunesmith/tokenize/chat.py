"""Encode a conversation into ``input_ids`` and ``labels`` (-100 outside trained spans).

Trained: each selected assistant turn's generated text (content, tool calls, reasoning, as the
template renders them) through the end-of-turn token that closes it. Never trained: headers,
system, user and tool turns. Character spans (``spans.py``) are mapped to tokens with the fast
tokenizer's offsets, so a token that straddles a header/content boundary is handled by
position, not by searching ids.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tunesmith.data.records import Message
from tunesmith.tokenize.spans import CharSpan, TemplateMismatch, assistant_spans, render
from tunesmith.tokenize.tokenizer import closer_ids

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE = -100


@dataclass(frozen=True)
class EncodedChat:
    """A tokenized conversation.

    ``spans``: token ranges ``[start, end)`` of the trained spans, in order.
    ``turn_spans``: per message, the trained token range of an assistant message (None for
    other messages and for assistant turns not trained).
    ``text``: the rendered conversation; ``appended_eos``: the template closes turns without an
    end-of-turn token, so what followed the last turn was cut and EOS added to the ids.
    """

    input_ids: list[int]
    labels: list[int]
    spans: list[tuple[int, int]]
    turn_spans: list[tuple[int, int] | None]
    text: str
    appended_eos: bool = False


def trainable_turns(
    messages: Sequence[Message], train_on_turns: Literal["all", "last"] = "all", allowed: Collection[int] | None = None
) -> list[int]:
    """Indices of the assistant messages to train: all (or the last), minus ``loss_weight: 0``."""
    turns = [i for i, m in enumerate(messages) if m.role == "assistant" and (allowed is None or i in allowed)]
    if train_on_turns == "last":
        turns = turns[-1:]
    return [i for i in turns if messages[i].weight != 0]


def encode_chat(
    messages: Sequence[Message],
    tokenizer: PreTrainedTokenizerBase,
    *,
    tools: Sequence[dict[str, Any]] = (),
    train_on_inputs: bool = False,
    train_on_turns: Literal["all", "last"] = "all",
    allowed: Collection[int] | None = None,
    closing: Collection[int] | None = None,
    rendered: str | None = None,
    encoding: tuple[Sequence[int], Sequence[tuple[int, int]]] | None = None,
    prompts: Mapping[int, str] | None = None,
) -> EncodedChat:
    """Render ``messages`` with the tokenizer's chat template and label the trained spans.

    ``allowed`` restricts training to those message indices (preference completions).
    ``closing`` is ``closer_ids(tokenizer)``, computed here unless a caller encoding many rows
    passes it once. ``rendered`` is ``render(tokenizer, messages, tools)`` when the caller has
    it already (the audit renders every row once; it is not rendered again here); ``encoding`` its
    token ids and character offsets and ``prompts`` the generation-prompt renders before assistant
    turns, when the caller made them for many rows at once (``rows.prepare``).
    Raises TemplateMismatch when the template rejects the conversation or a span can't be found.
    """
    dicts = [m.to_dict() for m in messages]
    full = render(tokenizer, dicts, tools) if rendered is None else rendered
    if encoding is None:
        enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        encoding = (enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]])
    ids: list[int] = list(encoding[0])
    offsets: list[tuple[int, int]] = list(encoding[1])
    if closing is None:
        closing = closer_ids(tokenizer)
    closers = [o for t, o in zip(ids, offsets) if t in closing]
    if train_on_inputs:
        char_spans = [_whole_text(ids, offsets, full, closing, len(messages) - 1)]
    else:
        turns = trainable_turns(messages, train_on_turns, allowed)
        char_spans = assistant_spans(tokenizer, dicts, tools, turns, full, closers, prompts)
    starts, ends = [o[0] for o in offsets], [o[1] for o in offsets]
    token_spans = [_to_tokens(starts, ends, s.start, s.end) for s in char_spans]
    appended = False
    if char_spans and not char_spans[-1].closed and char_spans[-1].message == len(messages) - 1:
        ids, token_spans[-1] = _append_eos(tokenizer, ids, token_spans[-1])
        appended = True
    labels = [IGNORE] * len(ids)
    for start, end in token_spans:
        labels[start:end] = ids[start:end]
    if token_spans and ids[token_spans[-1][1] - 1] not in closing:
        raise TemplateMismatch(
            f"message {char_spans[-1].message} (assistant): the last trained turn does not end with an "
            "end-of-turn token, so the model would never learn to stop (the template closes turns "
            "without one and this is not the final message)"
        )
    turn_spans: list[tuple[int, int] | None] = [None] * len(messages)
    for span, tokens in zip([] if train_on_inputs else char_spans, token_spans):
        turn_spans[span.message] = tokens
    return EncodedChat(ids, labels, token_spans, turn_spans, full, appended)


def _to_tokens(starts: Sequence[int], ends: Sequence[int], start: int, end: int) -> tuple[int, int]:
    """Token range covering characters ``[start, end)``: every token that reaches into it."""
    first = bisect_right(ends, start)
    last = bisect_left(starts, end)
    if last <= first:
        raise TemplateMismatch(f"characters {start}..{end} of the rendered text hold no token")
    return first, last


def _whole_text(
    ids: Sequence[int], offsets: Sequence[tuple[int, int]], full: str, closing: Collection[int], last: int
) -> CharSpan:
    """``train_on_inputs``: everything up to the last non-whitespace token."""
    for t, (s, e) in zip(reversed(ids), reversed(offsets)):
        if full[s:e].strip() or t in closing:
            return CharSpan(last, 0, e, t in closing)
    raise TemplateMismatch("the rendered conversation is empty")


def _append_eos(
    tokenizer: PreTrainedTokenizerBase, ids: list[int], span: tuple[int, int]
) -> tuple[list[int], tuple[int, int]]:
    """Cut what follows the span (whitespace the template emits after the last turn) and add EOS."""
    if tokenizer.eos_token_id is None:
        raise TemplateMismatch(
            "the chat template closes assistant turns without an end-of-turn token and the tokenizer "
            "has no eos_token to append"
        )
    start, end = span
    return ids[:end] + [tokenizer.eos_token_id], (start, end + 1)


@dataclass(frozen=True)
class EncodedPreference:
    """TRL's preference format: shared prompt ids, then each completion's trained ids."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    text: str


def encode_preference(
    prompt: Sequence[Message],
    chosen: Sequence[Message],
    rejected: Sequence[Message],
    tokenizer: PreTrainedTokenizerBase,
    *,
    tools: Sequence[dict[str, Any]] = (),
    closing: Collection[int] | None = None,
) -> EncodedPreference:
    """Encode prompt + each side; the completion runs from its first to its last trained token.

    Every completion token is trained (TRL has no mask inside a completion), so a side whose trained
    turns are not contiguous (a tool or user turn between them) is refused. The prompt is the token
    prefix both sides share: where a header's trailing whitespace merges into the answer's first token
    differently on each side, that whitespace goes with each completion instead of failing the row.
    """
    sides = []
    for side in (chosen, rejected):
        messages = [*prompt, *side]
        enc = encode_chat(messages, tokenizer, tools=tools, allowed=range(len(prompt), len(messages)), closing=closing)
        if not enc.spans:
            raise TemplateMismatch("a preference completion has no assistant turn to train")
        if any(a[1] != b[0] for a, b in zip(enc.spans, enc.spans[1:])):
            raise TemplateMismatch(
                "a preference completion holds turns that are not the assistant's (a tool result, a user turn, a "
                "second turn's header) between its assistant turns: every completion token is trained, so these "
                "would be too; make each chosen/rejected a single assistant turn (move the rest into the prompt)"
            )
        sides.append(enc)
    cut = _shared_prompt(tokenizer, sides[0], sides[1])
    c, r = sides
    return EncodedPreference(c.input_ids[:cut], c.input_ids[cut : c.spans[-1][1]], r.input_ids[cut : r.spans[-1][1]],
                             c.text)


def _shared_prompt(tokenizer: PreTrainedTokenizerBase, chosen: EncodedChat, rejected: EncodedChat) -> int:
    """Length of the prompt ids both sides share: their common token prefix before either answer starts,
    when what it leaves before each answer is whitespace only; else TemplateMismatch."""
    limit = min(chosen.spans[0][0], rejected.spans[0][0])
    cut = 0
    while cut < limit and chosen.input_ids[cut] == rejected.input_ids[cut]:
        cut += 1
    for enc in (chosen, rejected):
        if tokenizer.decode(enc.input_ids[cut : enc.spans[0][0]], skip_special_tokens=False).strip():
            raise TemplateMismatch("the prompt tokenizes differently before the chosen and the rejected answer")
    return cut


class EncodeMemo:
    """``encode_chat`` results and chat-template renders shared by one run's audit and
    tokenization, which encode every SFT row in exactly the same way (same tokenizer, template,
    flags): the second asks, the first computed. The audit renders every row once (for token
    lengths) and keeps the render here (:meth:`keep_render`); tokenization's ``encode_chat``
    then starts from it instead of rendering the row again."""

    def __init__(self) -> None:
        self._done: dict[str, EncodedChat] = {}
        self._renders: dict[str, str] = {}

    @staticmethod
    def _render_key(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> str:
        return repr((tuple(messages), list(tools)))

    def keep_render(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]], text: str) -> None:
        """Remember ``render(tokenizer, messages, tools)`` (the memo's tokenizer) for ``encode_chat``."""
        self._renders[self._render_key(messages, tools)] = text

    def rendered(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] = ()) -> str | None:
        """The kept render of ``messages`` with ``tools``, or None."""
        return self._renders.get(self._render_key(messages, tools))

    @staticmethod
    def _key(messages: Sequence[Message], options: dict[str, Any]) -> str:
        return repr((tuple(messages), {k: v for k, v in options.items()
                                       if k not in ("closing", "rendered", "encoding", "prompts")}))

    def knows(self, messages: Sequence[Message], **options: Any) -> bool:
        """Whether ``encode_chat(messages, ..., **options)`` is already kept (no render or tokenizing needed)."""
        return self._key(messages, options) in self._done

    def encode_chat(self, messages: Sequence[Message], tokenizer: PreTrainedTokenizerBase, **options: Any) -> EncodedChat:
        key = self._key(messages, options)
        found = self._done.get(key)
        if found is None:
            if options.get("rendered") is None:
                options["rendered"] = self.rendered(messages, options.get("tools", ()))
            found = self._done[key] = encode_chat(messages, tokenizer, **options)
        return found


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """EOS plus the turn-closing tokens the tokenization engine trains after an assistant reply:
    the ids generation must stop on (generation configs, the server, exports, GGUF conversion)."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    if tokenizer.chat_template:
        enc = encode_chat([Message("user", "hi"), Message("assistant", "ok")], tokenizer)
        start, end = enc.spans[-1]
        closing = closer_ids(tokenizer)
        ids += [int(t) for t in dict.fromkeys(enc.input_ids[start:end]) if t in closing and t not in ids]
    return ids
