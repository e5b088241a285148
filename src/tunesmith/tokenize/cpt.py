"""Raw text (``method: cpt``): documents joined with EOS, cut into ``sequence_len`` windows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

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


def tokenize_text_split(records: Sequence[Record], tokenizer: PreTrainedTokenizerBase, cfg: Config) -> Split:
    """One stream per split: each document's tokens followed by EOS; labels equal the inputs."""
    if tokenizer.eos_token_id is None:
        raise ConfigError("method: cpt joins documents with EOS, but the tokenizer has no eos_token")
    split = Split()
    stream: list[int] = []
    texts = [r for r in records if r.text and r.text.strip()]
    for record in records:
        if not (record.text and record.text.strip()):
            split.bad(record, "empty_text", "text", "is empty", cfg.on_bad_rows)
    encoded = tokenizer([r.text for r in texts], add_special_tokens=False)["input_ids"] if texts else []
    for ids in encoded:
        stream.extend(ids)
        stream.append(tokenizer.eos_token_id)
    step = cfg.sequence_len - cfg.stride
    for k, window in enumerate(windows(stream, cfg.sequence_len, cfg.stride, cfg.min_window)):
        split.rows.append({"input_ids": window, "labels": list(window)})
        split.sources.append(f"window {k} (tokens {k * step}..{k * step + len(window)})")
    covered = (len(split.rows) - 1) * step + len(split.rows[-1]["input_ids"]) if split.rows else 0
    split.dropped_tokens = len(stream) - covered
    split.documents = len(texts)
    return split
