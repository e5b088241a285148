"""How many tokens a run processes and its longest batch: through the tokenize stage (and its
cache) when the tokenizer is on disk, else estimated from the data's characters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config.methods import method_spec
from tunesmith.config import Config
from tunesmith.errors import ConfigError


@dataclass(frozen=True)
class DataStats:
    """Training data as the plan sees it."""

    rows: int  # training rows (before packing)
    tokens: int  # real tokens per epoch
    slots: int  # tokens computed per epoch, padding included (DPO: chosen and rejected, padded to each other)
    longest: int  # longest sequence of a batch (DPO: of chosen / rejected)
    source: str  # "tokenized" or how it was estimated
    kind: str  # sft | preference | kto | text
    padded: bool  # batches carry padding or packing (an attention mask is materialised)
    batch_rows: int = 0  # rows as batched per epoch: packed bins / text windows / pairs (0: as ``rows``)

    @property
    def slots_per_batch_row(self) -> float:
        """Token positions one batched row computes on average (what a step of ``max_steps`` takes per row)."""
        return self.slots / max(1, self.batch_rows or self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "tokens": self.tokens, "slots": self.slots, "longest": self.longest,
                "source": self.source, "kind": self.kind}


def data_stats(config: Config, base_for_tokenizer: str, chars_per_token: float) -> DataStats:
    """Tokenize when the tokenizer is available offline; otherwise estimate from characters.

    Nothing lands in ``output_dir`` but the tokenize cache (which train reuses and its run-directory
    check ignores): rows skipped under ``on_bad_rows: skip`` are listed in a temporary folder."""
    import tempfile

    from tunesmith import data

    with tempfile.TemporaryDirectory(prefix="tunesmith-plan-") as scratch:
        dataset = data.run(config.model_copy(update={"output_dir": scratch}))
    kind = dataset.train[0].kind
    folder = tokenizer_folder(base_for_tokenizer)
    if folder is not None:
        from tunesmith import tokenize

        try:
            tokenizer = tokenize.load_tokenizer(folder, config.chat_template)
        except ConfigError as exc:
            reason = str(exc).splitlines()[0]
        else:
            return from_tokenized(config, tokenize.run(config, dataset, tokenizer), kind)
    else:
        reason = f"no tokenizer for {base_for_tokenizer} on this machine"
    return _from_characters(config, dataset.train, kind, chars_per_token, reason)


def tokenizer_folder(base_model: str) -> str | None:
    """A local folder (or Hugging Face cache snapshot) holding the tokenizer, without network."""
    path = Path(base_model)
    if path.is_dir():
        return str(path) if any(path.glob("tokenizer*")) else None
    from tunesmith.plan.shapes import cached_snapshot

    snapshot = cached_snapshot(base_model)
    return str(snapshot) if snapshot is not None and any(snapshot.glob("tokenizer*")) else None


def from_tokenized(config: Config, tok: Any, kind: str) -> DataStats:
    b = config.micro_batch_size
    rows_kind = method_spec(config.method).rows
    if rows_kind == "kto":
        lengths = [min(len(r["prompt_ids"]) + len(r["completion_ids"]), config.sequence_len) for r in tok.train]
        return DataStats(len(lengths), sum(lengths), _slots(lengths, b), max(lengths, default=0), "tokenized", kind,
                         b > 1, len(lengths))
    if rows_kind == "preference":
        lengths = [max(len(r["prompt_ids"]) + len(r["chosen_ids"]), len(r["prompt_ids"]) + len(r["rejected_ids"]))
                   for r in tok.train]
        lengths = [min(n, config.sequence_len) for n in lengths]
        real = sum(len(r["prompt_ids"]) * 2 + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in tok.train)
        return DataStats(len(lengths), real, 2 * _slots(lengths, b), max(lengths, default=0), "tokenized", kind,
                         b > 1, len(lengths))
    rows = [len(r["input_ids"]) for r in tok.train]  # packed bins when sample_packing
    samples = [len(r["input_ids"]) for r in tok.samples]
    packed = bool(tok.stats.get("sample_packing"))
    return DataStats(len(samples), sum(samples), _slots(rows, b), max(rows, default=0), "tokenized", kind,
                     b > 1 or packed, len(rows))


def _slots(lengths: Sequence[int], batch: int) -> int:
    """Token positions computed: batches of ``batch`` rows padded to their longest (in data order)."""
    return sum(max(lengths[k : k + batch]) * len(lengths[k : k + batch]) for k in range(0, len(lengths), batch))


def _from_characters(config: Config, records: Sequence[Any], kind: str, per_token: float, reason: str) -> DataStats:
    """Characters / ``per_token`` plus a few template tokens per message; longest = sequence_len."""

    def chars(messages: Sequence[Any]) -> float:
        return sum(len(m.content) / per_token + 4 for m in messages)

    if kind == "text":
        total = sum(len(r.text or "") / per_token for r in records)
        windows = max(1, -(-int(total) // max(1, config.sequence_len - config.stride)))
        lengths = [config.sequence_len] * windows
        real = int(total)
    elif kind == "preference":
        pairs = [(chars(r.messages) + chars(r.chosen), chars(r.messages) + chars(r.rejected)) for r in records]
        lengths = [int(min(max(c, r), config.sequence_len)) for c, r in pairs]
        real = int(sum(c + r for c, r in pairs))
    else:
        lengths = [int(min(chars(r.messages), config.sequence_len)) for r in records]
        real = sum(lengths)
    factor = 2 if kind == "preference" else 1
    if config.sample_packing and kind != "preference":
        lengths = [config.sequence_len] * max(1, -(-sum(lengths) // config.sequence_len))
    source = f"estimated: characters / {per_token:g} + 4 tokens a message ({reason})"
    return DataStats(len(records), real, factor * _slots(lengths, config.micro_batch_size), max(lengths, default=1),
                     source, kind, config.micro_batch_size > 1 or config.sample_packing, len(lengths))
