"""Raw text (``method: cpt``): documents joined with EOS, cut into ``sequence_len`` windows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tunesmith.config.schema import Config
from tunesmith.data.records import Record
from tunesmith.errors import ConfigError
from tunesmith.tokenize.rows import Split

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def windows(stream: Sequence[int], length: int, stride: int = 0, min_window: int = 1) -> list[list[int]]:
    """Windows of ``length`` tokens; consecutive windows overlap by ``stride`` tokens.

    The tail window (shorter than ``length``) is kept only when it holds at least
    ``min_window`` tokens.
    """
    step = length - stride
    out: list[list[int]] = []
    start = 0
    while start < len(stream):
        window = list(stream[start : start + length])
        if len(window) == length or len(window) >= min_window:
            out.append(window)
        if start + length >= len(stream):
            break
        start += step
    return out


_DOCS = 256  # documents tokenized per call


class _Windows:
    """:func:`windows` over a stream fed piece by piece: each window is emitted (to ``split``) as soon as
    the tokens after it show it is not the last one, so only about one window plus the latest batch of
    documents is held, never the whole stream."""

    def __init__(self, split: Split, length: int, stride: int, min_window: int):
        self.split, self.length, self.step, self.min_window = split, length, length - stride, min_window
        self.buffer: list[int] = []  # the stream from token `offset` on
        self.at = 0  # where the next window starts, in `buffer`
        self.offset = 0
        self.total = 0  # tokens fed so far
        self.count = 0  # windows emitted
        self.covered = 0  # stream tokens inside some window

    def feed(self, ids: Sequence[int]) -> None:
        self.buffer.extend(ids)
        self.total += len(ids)
        while len(self.buffer) - self.at > self.length:  # a token after this window: it is not the last
            self._emit(self.buffer[self.at : self.at + self.length])
            self.at += self.step
        if self.at > len(self.buffer) // 2:  # drop what no window will read again
            del self.buffer[: self.at]
            self.offset += self.at
            self.at = 0

    def finish(self) -> None:
        """The last window (shorter than ``length`` unless the stream ends exactly at one)."""
        tail = self.buffer[self.at : self.at + self.length]
        if tail and (len(tail) == self.length or len(tail) >= self.min_window):
            self._emit(tail)
        self.split.dropped_tokens = self.total - self.covered

    def _emit(self, window: list[int]) -> None:
        start = self.offset + self.at
        self.split.rows.append({"input_ids": window, "labels": list(window)})
        self.split.sources.append(f"window {self.count} (tokens {start}..{start + len(window)})")
        self.count += 1
        self.covered = start + len(window)


def tokenize_text_split(records: Sequence[Record], tokenizer: PreTrainedTokenizerBase, cfg: Config,
                        rows: Any = None) -> Split:
    """One stream per split: each document's tokens followed by EOS; labels equal the inputs.

    Streamed: documents are tokenized ``_DOCS`` at a time and windows emitted as they fill, to
    ``rows`` (``cache.ColumnWriter``: straight to the cache's files; a list by default) — the same
    windows, sources and ``dropped_tokens`` as cutting the whole stream with :func:`windows`."""
    if tokenizer.eos_token_id is None:
        raise ConfigError("method: cpt joins documents with EOS, but the tokenizer has no eos_token")
    split = Split() if rows is None else Split(rows=rows)
    cut = _Windows(split, cfg.sequence_len, cfg.stride, cfg.min_window)
    batch: list[str] = []
    for record in records:
        if not (record.text and record.text.strip()):
            split.bad(record, "empty_text", "text", "is empty", cfg.on_bad_rows)
            continue
        batch.append(record.text)
        split.documents += 1
        if len(batch) == _DOCS:
            _feed(cut, batch, tokenizer)
    _feed(cut, batch, tokenizer)
    cut.finish()
    return split


def _feed(cut: _Windows, batch: list[str], tokenizer: PreTrainedTokenizerBase) -> None:
    if batch:
        for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            cut.feed([*ids, tokenizer.eos_token_id])
        batch.clear()
