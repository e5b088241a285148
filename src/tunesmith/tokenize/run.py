"""``tokenize.run(config, data)``: records -> training rows, cached, with a report of what changed."""

from __future__ import annotations

import itertools
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tunesmith.config.methods import method_spec
from tunesmith.config.schema import Config
from tunesmith.data.pipeline import check_kinds
from tunesmith.data.records import Record
from tunesmith.data.store import on_disk
from tunesmith.errors import DataError
from tunesmith.tokenize import cache
from tunesmith.tokenize.chat import IGNORE, EncodeMemo
from tunesmith.tokenize.cpt import tokenize_text_split
from tunesmith.tokenize.pack import Bins, bins_for, packed_rows, packing_efficiency, padded_efficiency
from tunesmith.tokenize.rows import TRUNCATION_ERROR, Split, tokenize_chat_split
from tunesmith.tokenize.template_fit import check_for_data
from tunesmith.tokenize.tokenizer import load_tokenizer, tokenizer_fingerprint

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger("tunesmith.tokenize")
_SPLITS = ("train", "eval")


class RecordSplits(Protocol):
    """What tokenization reads from ``tunesmith.data.run``'s result."""

    @property
    def train(self) -> Sequence[Record]: ...

    @property
    def eval(self) -> Sequence[Record]: ...


@dataclass(frozen=True)
class TokenizeResult:
    """Rows ready for a collator, plus the report.

    ``train`` is packed when ``sample_packing`` is on (sft); ``samples`` are the train rows
    before packing, in record order, and ``sources`` says where each came from.
    """

    train: Sequence[dict[str, list[int]]]
    eval: list[dict[str, list[int]]]
    stats: dict[str, Any]
    tokenizer: PreTrainedTokenizerBase
    cache_hit: bool
    fingerprint: str
    samples: Sequence[dict[str, list[int]]]
    sources: list[str]
    cache_dir: Path
    rejected: list[dict[str, Any]] = field(default_factory=list)
    """Every row left out (too long, template failure, no trained token, ...) with its source,
    row, line, field and reason, for ``rejected_rows.jsonl``."""


def settings(config: Config) -> dict[str, Any]:
    """The config values that change tokenized rows (part of the cache key)."""
    keys = ("method", "chat_template", "system_prompt", "sequence_len", "train_on_inputs", "train_on_turns",
            "truncation", "stride", "min_window", "on_bad_rows")
    return {k: getattr(config, k) for k in keys}


def run(
    config: Config, data: RecordSplits | None = None, tokenizer: PreTrainedTokenizerBase | None = None,
    memo: EncodeMemo | None = None,
) -> TokenizeResult:
    """Tokenize the train and eval records of ``config`` (ingesting them when ``data`` is None).

    ``tokenizer`` is the one ``load_tokenizer(config.base_model, config.chat_template)`` returns;
    it is loaded here when not given. ``memo``: the audit's encodings of the same rows, reused.
    """
    if data is None:
        from tunesmith.data import run as run_data

        data = run_data(config)
    check_kinds(itertools.chain(data.train, data.eval), config.method)
    if on_disk(data.train):
        memo = None  # it would keep every row's encoding in memory
    spec = method_spec(config.method)
    if tokenizer is None:
        tokenizer = load_tokenizer(config.base_model, config.chat_template, config.special_tokens)
    if spec.rows != "text":
        check_for_data(tokenizer, config.chat_template, config.system_prompt, data.train, data.eval)
    fingerprint = tokenizer_fingerprint(tokenizer)
    key = cache.cache_key(cache.records_fingerprint([data.train, data.eval]), fingerprint, settings(config))
    path = cache.cache_dir(config.output_dir, key)
    cached = None if config.overwrite_cache else cache.load(path, _SPLITS)
    if cached is not None and "rejected" not in cached[1]:
        cached = None  # an entry written before rejected rows were recorded: rebuild it
    if cached is not None:
        splits, meta = cached
        log.info("tokenize: reusing the cached tokenized dataset %s", path)
    else:
        meta = _build(config, tokenizer, data, path, memo)
        reread = cache.load(path, _SPLITS)  # the memory-mapped rows a cache hit gives
        if reread is None:
            raise OSError(f"the tokenized dataset written to {path} cannot be read back")
        splits = reread[0]
        log.info("tokenize: tokenized %d train / %d eval rows into %s", len(splits["train"]), len(splits["eval"]), path)
    lengths, trained = _token_counts(splits["train"])
    bins = bins_for(lengths, config.sequence_len) if spec.rows in ("chat", "text") else []
    stats = _stats(config, meta, (lengths, trained), _token_counts(splits["eval"])[0], bins)
    train = splits["train"]
    if config.sample_packing and spec.packing:
        train = _packed(path, train, bins, config.sequence_len, rebuild=cached is None)
    return TokenizeResult(
        train=train, eval=splits["eval"], stats=stats, tokenizer=tokenizer, cache_hit=cached is not None,
        fingerprint=fingerprint, samples=splits["train"], sources=meta["sources"], cache_dir=path,
        rejected=meta["rejected"],
    )


_PACKED_FLUSH_TOKENS = 1 << 20  # tokens per column buffered before packed rows are written


def _packed(path: Path, rows: cache.MappedRows, bins: Bins, capacity: int, rebuild: bool) -> cache.MappedRows:
    """The packed train rows (at most ``capacity`` tokens each), memory-mapped from their own cache
    entry (``<key>-packed``, next to ``path``): built one packed row at a time from the unpacked rows
    already on disk and written as they come, so no list of packed (or unpacked) rows is ever held.
    ``rebuild``: the unpacked entry was just (re)written, so an older packed entry is replaced."""
    where = path.with_name(f"{path.name}-packed")
    if rebuild:
        shutil.rmtree(where, ignore_errors=True)
    found = cache.load(where, ("train",))
    if found is not None and found[1].get("bins") == len(bins):
        return found[0]["train"]
    shutil.rmtree(where, ignore_errors=True)
    entry = cache.Entry(where)
    try:
        writer = entry.writer("train", flush=max(1, _PACKED_FLUSH_TOKENS // capacity))
        with cache.ReadRows(rows) as samples:  # read, not mapped: no page of them stays in this process's RSS
            for row in packed_rows(samples, bins):
                writer.append(row)
    except BaseException:
        entry.discard()
        raise
    entry.commit({"bins": len(bins), "samples": len(rows)})
    reread = cache.load(where, ("train",))
    if reread is None:
        raise OSError(f"the packed dataset written to {where} cannot be read back")
    return reread[0]["train"]


def _build(
    config: Config, tokenizer: PreTrainedTokenizerBase, data: RecordSplits, path: Path, memo: EncodeMemo | None = None
) -> dict[str, Any]:
    """Tokenize the splits into the cache entry at ``path`` (chat rows go to its files as they are
    made, nothing is kept per row in memory); returns the entry's meta."""
    entry = cache.Entry(path)
    try:
        if method_spec(config.method).rows == "text":  # windows go to the cache's files as they fill
            done: dict[str, Split] = {name: tokenize_text_split(getattr(data, name), tokenizer, config,
                                                                entry.writer(name, flush=_text_flush(config)))
                                      for name in _SPLITS}
        else:
            done = {name: tokenize_chat_split(getattr(data, name), tokenizer, config, memo, entry.writer(name))
                    for name in _SPLITS}
        errors = [e for split in done.values() for e in split.errors]
        if errors:
            raise DataError(errors, total_rows=len(data.train) + len(data.eval), hint=_hint(errors))
    except BaseException:
        entry.discard()
        raise
    for name, split in done.items():
        if split.dropped:
            log.warning("tokenize: dropped %d %s rows (%s)", sum(split.dropped.values()), name, dict(split.dropped))
    meta = {"sources": done["train"].sources, "counts": {name: _counts(split) for name, split in done.items()},
            "rejected": [{**r, "split": name} for name, split in done.items() for r in split.rejected]}
    entry.commit(meta)
    return meta


def _hint(errors: list[Any]) -> str:
    """What to do: on_bad_rows: skip drops invalid rows, never rows too long under truncation: error."""
    too_long = sum(e.message.endswith(TRUNCATION_ERROR) for e in errors)
    fix = "raise sequence_len, or set truncation: drop or truncate_prompt, for the rows longer than sequence_len"
    if too_long == len(errors):
        return f"({fix})"
    if too_long:
        return f"({fix}; set on_bad_rows: skip to drop the invalid others, written to rejected_rows.jsonl)"
    return DataError.SKIP_HINT


def _text_flush(config: Config) -> int:
    """Windows buffered per write: about ``_PACKED_FLUSH_TOKENS`` tokens (windows are long)."""
    return max(1, _PACKED_FLUSH_TOKENS // config.sequence_len)


def _counts(split: Split) -> dict[str, Any]:
    return {
        "dropped": dict(split.dropped), "drop_examples": split.drop_examples,
        "truncated_rows": split.truncated_rows, "truncated_tokens": split.truncated_tokens,
        "dropped_tokens": split.dropped_tokens, "appended_eos_rows": split.appended_eos_rows,
        "documents": split.documents,
    }


def _token_counts(rows: Sequence[dict[str, list[int]]]) -> tuple[list[int], int]:
    """Per-row token counts and the number of trained tokens (from the cache's lengths when the rows
    are memory-mapped: no row is read)."""
    if isinstance(rows, cache.MappedRows) and rows.trained is not None:
        return _mapped_counts(rows)
    if rows and "completion_ids" in rows[0]:
        lengths = [len(r["prompt_ids"]) + len(r["completion_ids"]) for r in rows]
        return lengths, sum(len(r["completion_ids"]) for r in rows)
    if rows and "prompt_ids" in rows[0]:
        lengths = [len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows]
        return lengths, sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows)
    lengths = [len(r["input_ids"]) for r in rows]
    return lengths, sum(sum(1 for x in r["labels"] if x != IGNORE) for r in rows)


def _mapped_counts(rows: cache.MappedRows) -> tuple[list[int], int]:
    columns = set(rows.columns)
    if not len(rows):
        return [], 0
    if "completion_ids" in columns:
        completion = rows.lengths("completion_ids")
        return (rows.lengths("prompt_ids") + completion).tolist(), int(completion.sum())
    if "prompt_ids" in columns:
        sides = rows.lengths("chosen_ids") + rows.lengths("rejected_ids")
        return (rows.lengths("prompt_ids") + sides).tolist(), int(sides.sum())
    return rows.lengths("input_ids").tolist(), int(rows.trained or 0)


def _stats(
    config: Config, meta: dict[str, Any], train: tuple[list[int], int], eval_lengths: list[int], bins: list[list[int]]
) -> dict[str, Any]:
    """The report: rows, tokens, trained share, truncation, drops, packing and padding efficiency."""
    counts = meta["counts"]["train"]
    lengths, trained = train
    spec = method_spec(config.method)
    sequences = spec.rows in ("chat", "text")
    stats: dict[str, Any] = {
        "rows": len(lengths), "tokens": sum(lengths), "trained_tokens": trained,
        "trained_share": trained / sum(lengths) if lengths else 0.0,
        "truncated_rows": counts["truncated_rows"], "truncated_tokens": counts["truncated_tokens"],
        "dropped_rows": sum(counts["dropped"].values()), "dropped": counts["dropped"],
        "dropped_tokens": counts["dropped_tokens"], "drop_examples": counts["drop_examples"],
        "appended_eos_rows": counts["appended_eos_rows"],
        "packing_efficiency": packing_efficiency(lengths, bins, config.sequence_len) if sequences else None,
        "padded_efficiency": padded_efficiency(lengths, config.micro_batch_size) if sequences else None,
        "sample_packing": config.sample_packing and spec.packing,
        "eval_rows": len(eval_lengths), "eval_tokens": sum(eval_lengths),
        "eval_dropped_rows": sum(meta["counts"]["eval"]["dropped"].values()),
    }
    if spec.rows == "text":
        stats["documents"] = counts["documents"]
    return stats
