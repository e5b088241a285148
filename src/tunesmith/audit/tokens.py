"""Token hooks backed by a real tokenizer and tunesmith's tokenization engine.

``lengths`` renders every row with the chat template and tokenizes the renders in one batch
(the engine's ``encode_chat`` is exact but ~1 ms a row); rows near ``sequence_len`` are then
re-measured with ``encode_chat`` so ``over_length`` is exact. ``encode`` is ``encode_chat``
itself (system prompt, tools, train_on_inputs/turns as configured).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tunesmith.config.schema import Config
from tunesmith.data.records import Message, Record
from tunesmith.errors import TunesmithError
from tunesmith.tokenize.chat import EncodedChat, EncodeMemo, encode_chat
from tunesmith.tokenize.rows import with_system_prompt
from tunesmith.tokenize.spans import render
from tunesmith.tokenize.tokenizer import closer_ids

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_RECHECK = 8  # rows within this many tokens of sequence_len are measured with encode_chat


class TokenizerHooks:
    """``TokenHooks`` for one tokenizer (chat template attached) and run configuration."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: Config, memo: EncodeMemo | None = None):
        self.tokenizer = tokenizer
        self.config = config
        self.memo = memo  # shared with tokenization, which encodes the same rows the same way
        self.stop_ids = closer_ids(tokenizer)
        self._stop_texts = tuple(str(t) for t in tokenizer.convert_ids_to_tokens(sorted(self.stop_ids)))

    def _conversations(self, record: Record) -> list[tuple[Message, ...]]:
        prompt = with_system_prompt(record.messages, self.config.system_prompt)
        if record.kind == "preference":
            return [prompt + record.chosen, prompt + record.rejected]
        return [prompt]

    def lengths(self, records: Sequence[Record]) -> list[int]:
        """Token count of each record as trained (preference: prompt + the longer side)."""
        texts: list[str] = []
        owner: list[int] = []
        appended: list[bool] = []
        for i, r in enumerate(records):
            for text in self._renders(r):
                # like the engine: an unclosed last turn loses its trailing whitespace and gains EOS
                unclosed = r.kind != "text" and not text.rstrip().endswith(self._stop_texts)
                texts.append(text.rstrip() if unclosed else text)
                appended.append(unclosed)
                owner.append(i)
        ids = self.tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]
        out = [0] * len(records)
        for i, seq, extra in zip(owner, ids, appended):
            out[i] = max(out[i], len(seq) + extra)
        limit = self.config.sequence_len
        for i, r in enumerate(records):
            if r.kind != "text" and abs(out[i] - limit) <= _RECHECK:
                out[i] = self._exact_length(r, out[i])
        return out

    def _renders(self, record: Record) -> list[str]:
        if record.kind == "text":
            return [record.text or ""]
        out = []
        for conv in self._conversations(record):
            try:
                out.append(render(self.tokenizer, [m.to_dict() for m in conv], record.tools))
            except TunesmithError:
                out.append("\n".join(m.content for m in conv))  # template_error reports the row
        return out

    def _exact_length(self, record: Record, fallback: int) -> int:
        try:
            sides = range(len(self._conversations(record)))
            return max(len(self.encode_side(record, side).input_ids) for side in sides)
        except TunesmithError:
            return fallback

    def encode(self, record: Record) -> EncodedChat:
        """The record as trained (preference: prompt + chosen, only the chosen side trained)."""
        return self.encode_side(record, 0)

    def encode_side(self, record: Record, side: int) -> EncodedChat:
        conv = self._conversations(record)[side]
        if record.kind == "preference":
            prompt = len(conv) - len(record.chosen if side == 0 else record.rejected)
            return encode_chat(
                conv, self.tokenizer, tools=record.tools, allowed=range(prompt, len(conv)), closing=self.stop_ids
            )
        encode = self.memo.encode_chat if self.memo is not None else encode_chat
        return encode(
            conv, self.tokenizer, tools=record.tools, closing=self.stop_ids,
            train_on_inputs=self.config.train_on_inputs, train_on_turns=self.config.train_on_turns,
        )

    def token_text(self, token_id: int) -> str:
        return str(self.tokenizer.convert_ids_to_tokens(token_id))
