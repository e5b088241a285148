"""``tunesmith.data.run(config)``: the data stage of a run.

Ingests ``datasets`` (+ ``eval_datasets``, ``test_datasets``), applies ``on_bad_rows``
(skip keeps every bad row with its reason in ``DataResult.rejected``; ``train`` writes them to
``<output_dir>/rejected_rows.jsonl``), checks the record kinds fit the method,
and splits ``val_set_size`` off the training rows with ``seed`` when no eval data is given.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config.methods import methods, methods_for_records
from tunesmith.config.schema import Config
from tunesmith.data.ingest import Collected, Rejected, collect, settle, specs_fingerprint
from tunesmith.data.readers import DataSourceError
from tunesmith.data.records import Record
from tunesmith.errors import ConfigError, RowError


@dataclass
class DataResult:
    """Normalised train / eval / test records of a run."""

    train: list[Record]
    eval: list[Record]
    test: list[Record]
    fingerprint: str
    formats: dict[str, str]
    errors: list[RowError] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    mix: list[Any] = field(default_factory=list)  # data/mix.py MixEntry per training dataset when mixed

    @property
    def skipped(self) -> int:
        """Rows left out under ``on_bad_rows: skip`` (each one is in ``errors``)."""
        return len(self.errors)


def run(config: Config) -> DataResult:
    """Ingest, validate and split the config's datasets."""
    parts = collect_splits(config)
    rejected = [r for part in parts.values() for r in part.rejected]
    rows = sum(part.rows for part in parts.values())
    errors = settle(rejected, rows, config.on_bad_rows, None)
    for part in parts.values():
        check_kinds(part.records, config.method)
    train = parts["train"].records
    if not train:
        raise DataSourceError(config.datasets[0].path, f"no training rows left ({len(errors)} invalid rows skipped)")
    evals = parts["eval"].records if "eval" in parts else []
    train, evals, mixed = _split_and_mix(config, train, evals, parts["train"].per_spec)
    return DataResult(
        train=train,
        eval=evals,
        test=parts["test"].records if "test" in parts else [],
        fingerprint=_combined(config, {name: part.fingerprint for name, part in parts.items()}),
        formats=formats_of(parts),
        errors=errors,
        rejected=rejected,
        mix=mixed,
    )


def _split_and_mix(config: Config, train: list[Record], evals: list[Record],
                   per_spec: list[int]) -> tuple[list[Record], list[Record], list[Any]]:
    """Validation split (before mixing, so a repeated row never lands on both sides), then the mix."""
    from tunesmith.data import mix

    keep = list(range(len(train)))
    if not evals and config.val_set_size > 0:
        keep, held = split_validation(keep, config.val_set_size, config.seed)  # type: ignore[arg-type]
        evals = [train[i] for i in held]  # type: ignore[index]
    spec_of = [i for i, n in enumerate(per_spec) for _ in range(n)]
    mixed, entries = mix.apply(config, [train[i] for i in keep], [spec_of[i] for i in keep])  # type: ignore[index]
    return mixed, evals, [e.to_dict() for e in entries]


def _combined(config: Config, parts: dict[str, str]) -> str:
    mixing = f";mix_temperature={config.mix_temperature}" if config.mix_temperature != 1.0 else ""
    digest = hashlib.sha256(f"val={config.val_set_size};seed={config.seed}{mixing}".encode())
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


def collect_splits(config: Config) -> dict[str, Collected]:
    """The train / eval / test datasets of ``config`` read, with bad rows collected, not raised."""
    return {
        name: collect(specs, config.method)
        for name, specs in (("train", config.datasets), ("eval", config.eval_datasets), ("test", config.test_datasets))
        if specs
    }


def formats_of(parts: dict[str, Collected]) -> dict[str, str]:
    """Dataset path -> detected format, over every split."""
    return {path: fmt for part in parts.values() for path, fmt in part.formats.items()}


def check_kinds(records: list[Record], method: str) -> None:
    """Every record must be of the kind ``method`` trains on."""
    spec = methods().get(method)
    wanted = spec.records if spec else None
    wrong = next((r for r in records if r.kind != wanted), None)
    if wanted is None or wrong is None:
        return
    fitting = methods_for_records(wrong.kind)
    fits = f" ({wrong.kind} rows train with method: {' | '.join(fitting)})" if fitting else ""
    raise ConfigError(f"method: {method} trains on {wanted} rows, but {wrong.source} is a {wrong.kind} row{fits}")


def split_validation(records: list[Record], size: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Deterministically move ``size`` (fraction < 1 or row count) of ``records`` to validation."""
    n = len(records)
    k = max(1, round(size * n)) if size < 1 else int(size)
    if k >= n:
        raise ConfigError(f"val_set_size: {size:g} would leave no training rows (there are {n})")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = set(order[:k])
    return [r for i, r in enumerate(records) if i not in held], [records[i] for i in sorted(held)]
