"""Token hooks backed by a real tokenizer and tunesmith's tokenization engine.

``start_lengths`` renders every row with the chat template, once, and tokenizes the renders in
batches in a worker thread (``tokenize.counts.TokenCounter``) while the next rows render and,
until the counts are asked for, while the audit's other checks run (the engine's ``encode_chat``
is exact but ~1 ms a row); rows near ``sequence_len`` are then re-measured with ``encode_chat``
so ``over_length`` is exact. ``encode`` is ``encode_chat`` itself (system prompt, tools,
train_on_inputs/turns as configured), started from the row's render. With an ``EncodeMemo`` the
renders are kept there too, so tokenization does not render the rows again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tunesmith.config.schema import Config
from tunesmith.data.records import Message, Record
from tunesmith.errors import TunesmithError
from tunesmith.tokenize.chat import EncodedChat, EncodeMemo, encode_chat
from tunesmith.tokenize.counts import TokenCounter, as_trained
from tunesmith.tokenize.rows import with_system_prompt
from tunesmith.tokenize.spans import render_many
from tunesmith.tokenize.tokenizer import closer_ids

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_RECHECK = 8  # rows within this many tokens of sequence_len are measured with encode_chat
_CHUNK = 512  # renders handed to the tokenizing thread at a time


class TokenizerHooks:
    """``TokenHooks`` for one tokenizer (chat template attached) and run configuration."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: Config, memo: EncodeMemo | None = None):
        self.tokenizer = tokenizer
        self.config = config
        self.memo = memo  # shared with tokenization, which encodes the same rows the same way
        self.stop_ids = closer_ids(tokenizer)
        self._stop_texts = tuple(str(t) for t in tokenizer.convert_ids_to_tokens(sorted(self.stop_ids)))
        self._renders: dict[int, tuple[Record, list[str | None]]] = {}  # id(record) -> (record, renders)

    def _conversations(self, record: Record) -> list[tuple[Message, ...]]:
        prompt = with_system_prompt(record.messages, self.config.system_prompt)
        if record.kind == "preference":
            return [prompt + record.chosen, prompt + record.rejected]
        return [prompt]

    def lengths(self, records: Sequence[Record]) -> list[int]:
        """Token count of each record as trained (preference: prompt + the longer side)."""
        return self.start_lengths(records)()

    def start_lengths(self, records: Sequence[Record]) -> Callable[[], list[int]]:
        """Render every record now and tokenize the renders in a worker thread; the returned
        function waits for the counts and returns ``lengths(records)``."""
        from tunesmith.data.store import on_disk

        counter = TokenCounter(self.tokenizer)
        keep = not on_disk(records)  # rows kept on disk: their renders are not kept in memory either
        owner: list[int] = []
        added: list[int] = []  # tokens the engine adds to each text (EOS after an unclosed last turn)
        for start in range(0, len(records), _CHUNK):
            texts = []
            for i, r, text in self._render_chunk(records, start, start + _CHUNK, keep):
                counted, extra = as_trained(text, self._stop_texts) if r.kind != "text" else (text, 0)
                texts.append(counted)
                added.append(extra)
                owner.append(i)
            counter.add(texts)

        def finish() -> list[int]:
            out = [0] * len(records)
            for i, n, extra in zip(owner, counter.counts(), added):
                out[i] = max(out[i], n + extra)
            limit = self.config.sequence_len
            for i, r in enumerate(records):
                if r.kind != "text" and abs(out[i] - limit) <= _RECHECK:
                    out[i] = self._exact_length(r, out[i])
            return out

        return finish

    def _render_chunk(self, records: Sequence[Record], start: int, end: int, keep: bool = True
                      ) -> list[tuple[int, Record, str]]:
        """(index, record, text) per conversation of ``records[start:end]``, rendered in one batch;
        the renders are kept for ``encode_side`` (and the memo) when ``keep``."""
        rows = range(start, min(end, len(records)))
        chunk = {i: records[i] for i in rows}
        convs = {i: self._conversations(r) for i, r in chunk.items() if r.kind != "text"}
        renders = iter(render_many(self.tokenizer, [[m.to_dict() for m in c] for cs in convs.values() for c in cs],
                                   [chunk[i].tools for i, cs in convs.items() for _ in cs]))
        out: list[tuple[int, Record, str]] = []
        for i in rows:
            r = chunk[i]
            if r.kind == "text":
                out.append((i, r, r.text or ""))
                continue
            kept: list[str | None] = []
            for conv in convs[i]:
                text = next(renders)
                kept.append(text)
                if text is None:  # template_error reports the row
                    text = "\n".join(m.content for m in conv)
                elif keep and self.memo is not None and r.kind != "preference":
                    self.memo.keep_render(conv, r.tools, text)
                out.append((i, r, text))
            if keep:
                self._renders[id(r)] = (r, kept)
        return out

    def _rendered(self, record: Record, side: int) -> str | None:
        entry = self._renders.get(id(record))
        return entry[1][side] if entry is not None and entry[0] is record else None

    def _exact_length(self, record: Record, fallback: int) -> int:
        try:
            sides = range(len(self._conversations(record)))
            return max(len(self.encode_side(record, side).input_ids) for side in sides)
        except TunesmithError:
            return fallback

    def encode(self, record: Record) -> EncodedChat:
        """The record as trained (preference: prompt + chosen, only the chosen side trained)."""
        return self.encode_side(record, 0)

    def encode_many(self, records: Sequence[Record]) -> list[EncodedChat | TunesmithError]:
        """``encode`` of each record (the error it raises in its place). Chat rows are tokenized
        ``_CHUNK`` at a time from their kept renders first (``tokenize.rows.prepare``: one
        ``encode_batch`` call, the prompt renders batched too) instead of one tokenizer call each:
        the encodings tokenization makes from the same hints, equal to ``encode``'s."""
        from tunesmith.tokenize.rows import Prepared, prepare

        plain = [r for r in records if r.kind not in ("preference", "text")]
        hints: dict[int, Prepared] = {}
        for start in range(0, len(plain), _CHUNK):
            part = plain[start : start + _CHUNK]
            kept = [self._renders.get(id(r)) for r in part]
            renders = None if any(k is None or k[0] is not r for k, r in zip(kept, part)) else [k[1][0] for k in kept]  # type: ignore[index]
            for r, hint in zip(part, prepare(part, self.tokenizer, self.config, renders)):
                if hint is not None:
                    hints[id(r)] = hint
        out: list[EncodedChat | TunesmithError] = []
        for r in records:
            try:
                out.append(self.encode_side(r, 0, hints.get(id(r))))
            except TunesmithError as exc:
                out.append(exc)
        return out

    def encode_side(self, record: Record, side: int, hint: Any = None) -> EncodedChat:
        """One side of the record encoded (``hint``: its ``tokenize.rows.Prepared``, batch-made)."""
        conv = self._conversations(record)[side]
        rendered = self._rendered(record, side)
        if record.kind == "preference":
            prompt = len(conv) - len(record.chosen if side == 0 else record.rejected)
            return encode_chat(
                conv, self.tokenizer, tools=record.tools, allowed=range(prompt, len(conv)), closing=self.stop_ids,
                rendered=rendered,
            )
        encode = self.memo.encode_chat if self.memo is not None else encode_chat
        done = {} if hint is None else {"rendered": hint.rendered, "encoding": hint.encoding, "prompts": hint.prompts}
        return encode(
            conv, self.tokenizer, tools=record.tools, closing=self.stop_ids, **({"rendered": rendered} | done),
            train_on_inputs=self.config.train_on_inputs, train_on_turns=self.config.train_on_turns,
        )

    def token_text(self, token_id: int) -> str:
        return str(self.tokenizer.convert_ids_to_tokens(token_id))
