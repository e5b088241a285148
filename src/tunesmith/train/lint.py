"""Config lint against the seed's ranges (``config/lint.yaml``, beside ``defaults.yaml``): warnings, never errors.

Checked on the resolved values (defaults filled in) and the number of training rows: the learning
rate against the method's or adapter's band, the effective batch (micro x accumulation x
processes), epochs of SFT (``num_epochs``, or the epochs ``max_steps`` amounts to), and full
fine-tuning on little data. Label smoothing with a completion-only loss cannot happen: tunesmith has no label-smoothing key (another tool's
``label_smoothing_factor`` is refused on import).
"""

from __future__ import annotations

import math
import os
from functools import cache
from importlib import resources
from typing import Any

from tunesmith.config import Config
from tunesmith.config.adapters import adapter_spec
from tunesmith.config.methods import method_spec
from tunesmith.config.yaml_load import load_table


@cache
def _table() -> dict[str, Any]:
    return load_table(resources.files("tunesmith.config").joinpath("lint.yaml").read_text("utf-8"))


def processes() -> int:
    """Training processes of this launch (torchrun / accelerate set WORLD_SIZE)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def effective_epochs(config: Config, values: dict[str, Any], rows: int, world: int | None = None) -> float | None:
    """The epochs the run trains: ``num_epochs`` (resolved), or with ``max_steps`` > 0 the steps over the optimizer
    steps of one epoch of ``rows`` training rows (packed rows when packing), counted as transformers' Trainer
    counts them (batches per process, then accumulation steps, a partial group counting as a step)."""
    if config.max_steps <= 0:
        return values.get("num_epochs")
    if rows <= 0:
        return None
    world = world or processes()
    batches = math.ceil(math.ceil(rows / world) / config.micro_batch_size)
    return config.max_steps / max(math.ceil(batches / config.gradient_accumulation_steps), 1)


def check(config: Config, values: dict[str, Any], train_rows: int, world: int | None = None,
          epoch_rows: int | None = None) -> list[str]:
    """Warnings for ``config`` with its resolved ``values`` (``config.defaults.resolve``); ``train_rows``: the
    training rows, ``epoch_rows``: the rows of one epoch as batched (packed rows when packing; default train_rows)."""
    t = {k: v for k, v in _table().items() if k not in config.lint_skip}  # lint_skip: deviations on purpose
    out: list[str] = []
    lr = t.get("learning_rate")
    band = (lr["methods"].get(config.method) or lr["adapters"].get(config.adapter)) if lr else None
    rate = values.get("learning_rate")
    if band and rate is not None and not band[0] <= rate <= band[1]:
        what = config.method if config.method in lr["methods"] else f"adapter {config.adapter}"
        out.append(f"learning_rate: {rate:g} is outside {band[0]:g}..{band[1]:g} for {what}: {lr['advice']}")
    world = world or processes()
    batch = config.micro_batch_size * config.gradient_accumulation_steps * world
    if "effective_batch" in t and batch < t["effective_batch"]["min"]:
        out.append(f"effective batch {batch} (micro_batch_size {config.micro_batch_size} x gradient_accumulation_steps "
                   f"{config.gradient_accumulation_steps} x {world} process(es)) is below "
                   f"{t['effective_batch']['min']}: {t['effective_batch']['advice']}")
    epoch_rows = train_rows if epoch_rows is None else epoch_rows
    epochs = effective_epochs(config, values, epoch_rows, world)
    if "epochs" in t and config.method in t["epochs"]["methods"] and epochs is not None and epochs > t["epochs"]["max"]:
        if config.max_steps > 0:
            out.append(f"max_steps: {config.max_steps} steps are {epochs:.3g} epochs of {config.method} (effective "
                       f"batch {batch}, {epoch_rows:,} training rows): "
                       f"{t['epochs']['advice']}")
        else:
            out.append(f"num_epochs: {epochs:g} epochs of {config.method}: {t['epochs']['advice']}")
    full = t.get("full_fine_tuning")
    text = method_spec(config.method).records == "text"  # continual pretraining: full fine-tuning is the norm
    if full and adapter_spec(config.adapter).full and not text and train_rows < full["min_rows"]:
        out.append(f"adapter: none with {train_rows:,} training rows: {full['advice']}")
    return out
