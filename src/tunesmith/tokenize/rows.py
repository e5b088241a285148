"""Tokenize one split of chat or preference records: encode, apply the truncation policy,
reject fully-masked rows, and count everything that was changed or dropped."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunesmith.config.schema import Config
from tunesmith.data.records import Message, Record
from tunesmith.errors import RowError
from tunesmith.tokenize.chat import IGNORE, EncodedChat, EncodeMemo, encode_chat, encode_preference, trainable_turns
from tunesmith.tokenize.spans import TemplateMismatch, render_many
from tunesmith.tokenize.tokenizer import closer_ids

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_EXAMPLES = 20
_BATCH = 256  # chat rows rendered and tokenized per call


@dataclass
class Split:
    """Tokenized rows of one split plus what happened on the way."""

    rows: list[dict[str, list[int]]] = field(default_factory=list)  # or a cache.ColumnWriter (append, len)
    sources: list[str] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    drop_examples: list[str] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    truncated_rows: int = 0
    truncated_tokens: int = 0
    dropped_tokens: int = 0
    appended_eos_rows: int = 0
    documents: int = 0

    def drop(self, record: Record, reason: str, detail: str, field_name: str | None = None) -> None:
        """Leave ``record`` out, counted under ``reason`` and listed (every one) in ``rejected``."""
        self.dropped[reason] += 1
        if len(self.drop_examples) < _EXAMPLES:
            self.drop_examples.append(f"{record.source}: {reason}: {detail}")
        src = record.source
        self.rejected.append({"source": src.file, "row": src.row, "line": src.line, "field": field_name,
                              "reason": f"{reason}: {detail}", "stage": "tokenize"})

    def fail(self, record: Record, field_name: str, message: str) -> None:
        src = record.source
        self.errors.append(RowError(src.file, src.row, field_name, message, src.line))

    def bad(self, record: Record, reason: str, field_name: str, message: str, on_bad_rows: str) -> None:
        """An invalid row: an error, or a counted drop (``reason``) under ``on_bad_rows: skip``."""
        if on_bad_rows == "skip":
            self.drop(record, reason, message, field_name)
        else:
            self.fail(record, field_name, message)


def with_system_prompt(messages: Sequence[Message], system_prompt: str | None) -> tuple[Message, ...]:
    """Prepend the configured system prompt to conversations that have none."""
    if system_prompt is None or any(m.role == "system" for m in messages):
        return tuple(messages)
    return (Message("system", system_prompt), *messages)


def shorter_prompts(messages: Sequence[Message]) -> Iterator[tuple[Message, ...]]:
    """The conversation with 1, 2, ... whole leading exchanges removed, system prompt kept.

    Each candidate starts at a user message; the last user turn is never removed.
    """
    head = list(messages[:1]) if messages and messages[0].role == "system" else []
    rest = list(messages[len(head) :])
    users = [k for k, m in enumerate(rest) if m.role == "user"]
    for cut in users[1:]:
        yield (*head, *rest[cut:])


def tokenize_chat_split(records: Sequence[Record], tokenizer: PreTrainedTokenizerBase, cfg: Config,
                        memo: EncodeMemo | None = None, rows: Any = None) -> Split:
    """sft/dpo: one row per record, truncation policy applied, bad rows collected or counted.
    ``memo``: encodings the audit already made (reused when identical). ``rows``: where the rows go
    as they are made (``cache.ColumnWriter``: straight to the cache's files), a list by default.
    Chat rows are rendered and tokenized ``_BATCH`` at a time (:func:`prepare`): the same rows."""
    from tunesmith.config.methods import method_spec

    split = Split() if rows is None else Split(rows=rows)
    closing = closer_ids(tokenizer)  # once per split, not once per row
    batched = method_spec(cfg.method).rows == "chat"
    for start in range(0, len(records), _BATCH):
        chunk = records[start : start + _BATCH]
        hints = _hints(chunk, tokenizer, cfg, memo) if batched else [None] * len(chunk)
        for record, hint in zip(chunk, hints):
            _add(split, record, _encoder(record, tokenizer, cfg, closing, memo, hint), cfg)
    if isinstance(split.rows, list) and any("loss_weights" in row for row in split.rows):
        # one layout per split: every row carries weights (a ColumnWriter does this itself)
        for row in split.rows:
            row.setdefault("loss_weights", [0.0 if x == IGNORE else 1.0 for x in row["labels"]])
    return split


def _hints(records: Sequence[Record], tokenizer: PreTrainedTokenizerBase, cfg: Config,
           memo: EncodeMemo | None) -> list[Prepared | None]:
    """:func:`prepare` for the records whose encoding ``memo`` does not already hold (the audit
    encoded them the same way: rendering and tokenizing them again would be thrown away)."""
    if memo is None:
        return prepare(records, tokenizer, cfg)
    todo = [k for k, r in enumerate(records) if not memo.knows(
        with_system_prompt(r.messages, cfg.system_prompt), tools=r.tools, train_on_inputs=cfg.train_on_inputs,
        train_on_turns=cfg.train_on_turns)]
    out: list[Prepared | None] = [None] * len(records)
    for k, hint in zip(todo, prepare([records[k] for k in todo], tokenizer, cfg) if todo else []):
        out[k] = hint
    return out


def _add(split: Split, record: Record, encode: Callable[[Sequence[Message]], _Encoded], cfg: Config) -> None:
    """Encode one record into ``split`` (a row, a counted drop or an error)."""
    try:
        encoded = _fit(record, encode, cfg, split)
    except TemplateMismatch as exc:
        split.bad(record, "template", "messages", str(exc), cfg.on_bad_rows)
        return
    if encoded is None:
        return
    if "labels" in encoded.row and all(x == IGNORE for x in encoded.row["labels"]):
        message = "no trained token: every label is -100 (no assistant turn to train)"
        split.bad(record, "no_trained_token", "messages", message, cfg.on_bad_rows)
        return
    split.rows.append(encoded.row)
    split.sources.append(str(record.source))
    split.appended_eos_rows += encoded.appended_eos


@dataclass(frozen=True)
class Prepared:
    """What :func:`encode_chat` needs of a whole conversation, made for many rows at once: the
    render, its token ids and character offsets, and the generation-prompt render before each
    trained assistant turn."""

    messages: tuple[Message, ...]
    rendered: str
    encoding: tuple[list[int], list[tuple[int, int]]]
    prompts: dict[int, str]


def prepare(records: Sequence[Record], tokenizer: PreTrainedTokenizerBase, cfg: Config,
            rendered: Sequence[str | None] | None = None) -> list[Prepared | None]:
    """Per record (system prompt applied), its conversation rendered (one ``apply_chat_template``
    call for neighbours with the same tools), tokenized (one ``encode_batch`` call) and its prompt
    renders; None where the template rejects the row (encoded row by row, reported as before).
    ``rendered``: those renders when the caller has them already (the audit's, None where the
    template rejected the row), so they are not made again."""
    convs = [with_system_prompt(r.messages, cfg.system_prompt) for r in records]
    dicts = [[m.to_dict() for m in c] for c in convs]
    tools = [r.tools for r in records]
    fulls = list(rendered) if rendered is not None else render_many(tokenizer, dicts, tools)
    ok = [k for k, text in enumerate(fulls) if text is not None]
    if not ok:
        return [None] * len(records)
    encodings = _encode_batch(tokenizer, [fulls[k] for k in ok])  # type: ignore[misc]
    wanted = [] if cfg.train_on_inputs else [
        (k, i) for k in ok for i in trainable_turns(convs[k], cfg.train_on_turns) if i > 0]
    prompts = render_many(tokenizer, [dicts[k][:i] for k, i in wanted], [tools[k] for k, _ in wanted],
                          add_generation_prompt=True)
    per_row: dict[int, dict[int, str]] = {k: {} for k in ok}
    for (k, i), text in zip(wanted, prompts):
        if text is not None:
            per_row[k][i] = text
    out: list[Prepared | None] = [None] * len(records)
    for n, k in enumerate(ok):
        out[k] = Prepared(convs[k], fulls[k], encodings[n], per_row[k])  # type: ignore[arg-type]
    return out


def _encode_batch(tokenizer: PreTrainedTokenizerBase, texts: list[str]
                  ) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """(ids, character offsets) of each text, no special tokens added: the fast tokenizer's own
    ``encode_batch`` (what ``tokenizer(texts, ...)`` calls, without building a BatchEncoding)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        pairs = zip(enc["input_ids"], enc["offset_mapping"])
        return [(list(ids), [tuple(o) for o in offsets]) for ids, offsets in pairs]
    return [(e.ids, e.offsets) for e in backend.encode_batch(texts, add_special_tokens=False)]


def token_weights(messages: Sequence[Message], enc: EncodedChat) -> list[float] | None:
    """Per-token loss weights (aligned with ``labels``) when a trained message has a fractional
    ``loss_weight``; None when every trained token weighs 1 (the plain loss applies)."""
    spans = [(span, messages[i].weight) for i, span in enumerate(enc.turn_spans) if span is not None]
    if all(w is None or w == 1 for _, w in spans):
        return None
    weights = [0.0] * len(enc.input_ids)
    for (start, end), w in spans:
        weights[start:end] = [1.0 if w is None else float(w)] * (end - start)
    return [w if label != IGNORE else 0.0 for w, label in zip(weights, enc.labels)]


@dataclass(frozen=True)
class _Encoded:
    row: dict[str, list[int]]
    length: int
    appended_eos: bool = False


TRUNCATION_ERROR = "(truncation: error; use drop or truncate_prompt)"  # on_bad_rows: skip does not drop these


def _fit(
    record: Record, encode: Callable[[Sequence[Message]], _Encoded], cfg: Config, split: Split
) -> _Encoded | None:
    """Encode the record under ``cfg.truncation``; None when it was dropped or failed."""
    prompt = with_system_prompt(record.messages, cfg.system_prompt)
    encoded = encode(prompt)
    length = encoded.length
    if length <= cfg.sequence_len:
        return encoded
    detail = f"{length} tokens > sequence_len {cfg.sequence_len}"
    if cfg.truncation == "error":
        split.fail(record, "messages", f"{detail} {TRUNCATION_ERROR}")
        return None
    if cfg.truncation == "truncate_prompt":
        for shorter in shorter_prompts(prompt):
            encoded = encode(shorter)
            if encoded.length <= cfg.sequence_len:
                split.truncated_rows += 1
                split.truncated_tokens += length - encoded.length
                return encoded
        detail += " even with every earlier turn removed"
    split.drop(record, "too_long", detail, "messages")
    split.dropped_tokens += length
    return None


def _encoder(
    record: Record, tokenizer: PreTrainedTokenizerBase, cfg: Config, closing: Collection[int],
    memo: EncodeMemo | None = None, hint: Prepared | None = None,
) -> Callable[[Sequence[Message]], _Encoded]:
    """A function from the (possibly shortened) prompt messages to the encoded row.

    The row layout is the method's ``rows`` (``config/methods.yaml``): chat (input_ids + labels),
    preference (prompt/chosen/rejected ids, TRL's layout) or kto (prompt/completion ids + label).
    """
    from tunesmith.config.methods import method_spec

    tools = record.tools
    encode = memo.encode_chat if memo is not None else encode_chat

    def sft(messages: Sequence[Message]) -> _Encoded:
        done = {} if hint is None or tuple(messages) != hint.messages else {
            "rendered": hint.rendered, "encoding": hint.encoding, "prompts": hint.prompts}
        enc: EncodedChat = encode(
            messages, tokenizer, tools=tools, train_on_inputs=cfg.train_on_inputs,
            train_on_turns=cfg.train_on_turns, closing=closing, **done,
        )
        row: dict[str, list[Any]] = {"input_ids": enc.input_ids, "labels": enc.labels}
        weights = token_weights(messages, enc)
        if weights is not None:
            row["loss_weights"] = weights
        return _Encoded(row, len(enc.input_ids), enc.appended_eos)

    def dpo(messages: Sequence[Message]) -> _Encoded:
        enc = encode_preference(messages, record.chosen, record.rejected, tokenizer, tools=tools, closing=closing)
        row = {"prompt_ids": enc.prompt_ids, "chosen_ids": enc.chosen_ids, "rejected_ids": enc.rejected_ids}
        return _Encoded(row, len(enc.prompt_ids) + max(len(enc.chosen_ids), len(enc.rejected_ids)))

    def kto(messages: Sequence[Message]) -> _Encoded:
        last = max(i for i, m in enumerate(messages) if m.role == "assistant")
        enc = encode_chat(messages, tokenizer, tools=tools, allowed=[last], closing=closing)
        if not enc.spans:
            raise TemplateMismatch("the kto completion (the last assistant turn) has no token to train")
        start, end = enc.spans[0][0], enc.spans[-1][1]
        row = {"prompt_ids": enc.input_ids[:start], "completion_ids": enc.input_ids[start:end],
               "label": [int(bool(record.label))]}
        return _Encoded(row, end, enc.appended_eos)

    encoders = {"chat": sft, "preference": dpo, "kto": kto}
    return encoders[method_spec(cfg.method).rows]
