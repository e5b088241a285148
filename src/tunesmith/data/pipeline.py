"""``tunesmith.data.run(config)``: the data stage of a run.

Ingests ``datasets`` (+ ``eval_datasets``, ``test_datasets``), applies ``on_bad_rows``
(skip keeps every bad row with its reason in ``DataResult.rejected``; ``train`` writes them to
``<output_dir>/rejected_rows.jsonl``), checks the record kinds fit the method,
and splits a validation set off the training rows with ``seed`` when no eval data is given:
``val_set_size`` when set, else by default 5 % (at least 20, at most 1,000 rows) once there are
200 training rows, so overfitting warnings, early stopping and best-checkpoint selection are on;
``val_set_size: 0`` turns it off. What was decided is ``DataResult.validation`` (in run.json).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config.methods import methods, methods_for_records
from tunesmith.config.schema import Config
from tunesmith.data.ingest import Collected, Rejected, collect, settle, specs_fingerprint
from tunesmith.data.readers import DataSourceError
from tunesmith.data.records import Record
from tunesmith.data.store import SPILL_ROWS, take
from tunesmith.errors import ConfigError, RowError


@dataclass
class DataResult:
    """Normalised train / eval / test records of a run."""

    train: Sequence[Record]  # a list, or past data.store.SPILL_ROWS rows a view of records on disk
    eval: Sequence[Record]
    test: Sequence[Record]
    fingerprint: str
    formats: dict[str, str]
    errors: list[RowError] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    validation: dict[str, object] = field(default_factory=dict)
    """Where the validation rows come from: ``{source: eval_datasets | val_set_size | default | none, rows, why}``."""
    mix: list[Any] = field(default_factory=list)  # data/mix.py MixEntry per training dataset when mixed

    @property
    def skipped(self) -> int:
        """Rows left out under ``on_bad_rows: skip`` (each one is in ``errors``)."""
        return len(self.errors)


def run(config: Config, *, spill_rows: int = SPILL_ROWS) -> DataResult:
    """Ingest, validate and split the config's datasets. A split of more than ``spill_rows`` records
    is kept on disk and read back on demand (``data.store``): the same records, in the same order."""
    parts = collect_splits(config, spill_rows)
    rejected = [r for part in parts.values() for r in part.rejected]
    rows = sum(part.rows for part in parts.values())
    errors = settle(rejected, rows, config.on_bad_rows, None)
    for part in parts.values():
        check_kinds(part.records, config.method)
    train = parts["train"].records
    if not train:
        raise DataSourceError(config.datasets[0].path, f"no training rows left ({len(errors)} invalid rows skipped)")
    evals = parts["eval"].records if "eval" in parts else []
    train, evals, validation, mixed = _split_and_mix(config, train, evals, parts["train"].per_spec)
    return DataResult(
        train=train,
        eval=evals,
        test=parts["test"].records if "test" in parts else [],
        fingerprint=_combined(config, {name: part.fingerprint for name, part in parts.items()}),
        formats=formats_of(parts),
        errors=errors,
        rejected=rejected,
        validation=validation,
        mix=mixed,
    )


# The default validation split (no eval data, val_set_size unset): share, bounds, smallest train set.
DEFAULT_SPLIT = {"share": 0.05, "min_rows": 20, "max_rows": 1000, "from_rows": 200}


def default_split_rows(n: int) -> int:
    """Rows the default split holds out of ``n`` training rows (0: too few rows to hold any out)."""
    if n < DEFAULT_SPLIT["from_rows"]:
        return 0
    return int(min(max(round(DEFAULT_SPLIT["share"] * n), DEFAULT_SPLIT["min_rows"]), DEFAULT_SPLIT["max_rows"]))


def validation_split(config: Config, train: Sequence[Record], evals: Sequence[Record]
                     ) -> tuple[list[int], list[int], dict[str, object]]:
    """Indices of the training rows kept and of those held out for validation per ``eval_datasets`` /
    ``val_set_size`` / the default (none held when eval data is given), and what was done."""
    everything = list(range(len(train)))
    if evals:
        return everything, [], {"source": "eval_datasets", "rows": len(evals)}
    if config.val_set_size == 0:
        return everything, [], {"source": "none", "rows": 0, "why": "val_set_size: 0"}
    if config.val_set_size is not None:
        keep, held = split_validation(train, config.val_set_size, config.seed)
        return keep, held, {"source": "val_set_size", "rows": len(held), "val_set_size": config.val_set_size}
    k = default_split_rows(len(train))
    if not k:
        return everything, [], {"source": "none", "rows": 0, "why": f"fewer than {DEFAULT_SPLIT['from_rows']} "
                                "training rows: no default validation split (set val_set_size to split anyway)"}
    keep, held = split_validation(train, k, config.seed)
    return keep, held, {"source": "default", "rows": len(held), "why": f"no eval data: {DEFAULT_SPLIT['share']:.0%} "
                        f"of the training rows ({DEFAULT_SPLIT['min_rows']}..{DEFAULT_SPLIT['max_rows']}), seed "
                        f"{config.seed}; val_set_size: 0 turns it off"}


def _split_and_mix(config: Config, train: Sequence[Record], evals: Sequence[Record], per_spec: list[int]
                   ) -> tuple[Sequence[Record], Sequence[Record], dict[str, object], list[Any]]:
    """Validation split (before mixing, so a repeated row never lands on both sides), then the mix.
    Both choose row indices; records kept on disk stay there (``store.take`` gives a view)."""
    from tunesmith.data import mix

    keep, held, validation = validation_split(config, train, evals)
    if validation["source"] != "eval_datasets":
        evals = take(train, held)
    spec_of = [i for i, n in enumerate(per_spec) for _ in range(n)]
    mixed, entries = mix.apply(config, keep, [spec_of[i] for i in keep])  # type: ignore[arg-type]
    return take(train, mixed), evals, validation, [e.to_dict() for e in entries]  # type: ignore[arg-type]


def _combined(config: Config, parts: dict[str, str]) -> str:
    val = "default" if config.val_set_size is None else f"{config.val_set_size}"
    mixing = f";mix_temperature={config.mix_temperature}" if config.mix_temperature != 1.0 else ""
    digest = hashlib.sha256(f"val={val};seed={config.seed}{mixing}".encode())
    for name, fingerprint in parts.items():
        digest.update(f"{name}:{fingerprint}".encode())
    return digest.hexdigest()


def local_fingerprint(config: Config) -> str | None:
    """``run(config).fingerprint`` from the files' bytes alone (nothing parsed; cheap enough to ask
    before a run), or None when a dataset is not a local file or folder (a hub id)."""
    from tunesmith.data.sources import looks_like_hub_id

    splits = (("train", config.datasets), ("eval", config.eval_datasets), ("test", config.test_datasets))
    if any(not Path(s.path).expanduser().exists() and looks_like_hub_id(s.path) for _, specs in splits for s in specs):
        return None
    return _combined(config, {name: specs_fingerprint(specs, config.method) for name, specs in splits if specs})


def collect_splits(config: Config, spill_rows: int = SPILL_ROWS) -> dict[str, Collected]:
    """The train / eval / test datasets of ``config`` read, with bad rows collected, not raised."""
    return {
        name: collect(specs, config.method, spill_rows)
        for name, specs in (("train", config.datasets), ("eval", config.eval_datasets), ("test", config.test_datasets))
        if specs
    }


def formats_of(parts: dict[str, Collected]) -> dict[str, str]:
    """Dataset path -> detected format, over every split."""
    return {path: fmt for part in parts.values() for path, fmt in part.formats.items()}


def check_kinds(records: Iterable[Record], method: str) -> None:
    """Every record must be of the kind ``method`` trains on."""
    spec = methods().get(method)
    wanted = spec.records if spec else None
    wrong = next((r for r in records if r.kind != wanted), None)
    if wanted is None or wrong is None:
        return
    fitting = methods_for_records(wrong.kind)
    fits = f" ({wrong.kind} rows train with method: {' | '.join(fitting)})" if fitting else ""
    raise ConfigError(f"method: {method} trains on {wanted} rows, but {wrong.source} is a {wrong.kind} row{fits}")


def split_validation(records: Sequence[Record], size: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices kept for training and moved to validation: ``size`` (fraction < 1 or row count) of
    ``records``, deterministically (``seed``).

    Rows sharing a prompt (``_prompt_key``) move together, so a repeated row or a prompt with two
    answers never stands on both sides (the audit's ``split_contamination`` would refuse the run);
    validation then gets ``size`` rows or the few more its last prompt group brings. One pass keeps
    a 16-byte digest per row, so records kept on disk stay there."""
    import numpy as np

    n = len(records)
    k = max(1, round(size * n)) if size < 1 else int(size)
    if k >= n:
        raise ConfigError(f"val_set_size: {size:g} would leave no training rows (there are {n})")
    digests = np.array([hashlib.blake2b(_prompt_key(r).encode(), digest_size=16).digest() for r in records],
                       dtype="S16")
    _, first, group = np.unique(digests, return_index=True, return_inverse=True)
    by_appearance = np.argsort(first, kind="stable")  # groups in the order their first row appears
    sizes = np.bincount(group, minlength=len(first))
    order = list(range(len(first)))
    random.Random(seed).shuffle(order)
    chosen, count = [], 0
    for position in order:
        if count >= k:
            break
        chosen.append(by_appearance[position])
        count += int(sizes[by_appearance[position]])
    if count >= n:
        raise ConfigError(f"val_set_size: {size:g} would leave no training rows (every row shares one prompt)")
    held = np.isin(group, chosen)
    return np.flatnonzero(~held).tolist(), np.flatnonzero(held).tolist()


def _prompt_key(record: Record) -> str:
    """What a row asks: its turns before the last assistant reply (a preference row's shared prompt,
    a text row's text), whitespace-trimmed."""
    turns = record.messages
    if record.kind in ("sft", "kto") and turns and turns[-1].role == "assistant":
        turns = turns[:-1]
    if record.kind == "text":
        return f"text\0{(record.text or '').strip()}"
    return "\0".join(f"{m.role}\1{m.content.strip()}" for m in turns)
