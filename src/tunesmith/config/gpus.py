"""The accelerator table (``gpus.yaml``): memory and peak throughput of common GPUs, by name."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from tunesmith.config.yaml_load import load_table
from tunesmith.errors import did_you_mean


@dataclass(frozen=True)
class GPU:
    """One accelerator: its memory (GiB), dense peak TFLOPS at ``precision``, and where the figures come from."""

    name: str
    memory_gib: float
    peak_tflops: float
    precision: str
    source: str


@cache
def gpu_table() -> dict[str, GPU]:
    raw = load_table(resources.files("tunesmith.config").joinpath("gpus.yaml").read_text("utf-8"))
    return {
        name: GPU(name, float(v["memory_gib"]), float(v["peak_tflops"]), v["precision"], v["source"])
        for name, v in raw.items()
    }


@cache
def _lookup_names() -> dict[str, str]:
    raw = load_table(resources.files("tunesmith.config").joinpath("gpus.yaml").read_text("utf-8"))
    out: dict[str, str] = {}
    for name, v in raw.items():
        for spelling in [name, *v.get("aliases", [])]:
            out[_norm(spelling)] = name
    return out


def _norm(name: str) -> str:
    return str(name).strip().upper().replace(" ", "-").replace("_", "-")


def canonical_gpu(name: str) -> str | None:
    """The table's name for ``name`` (case-insensitive, aliases accepted), or None when unknown."""
    return _lookup_names().get(_norm(name))


def unknown_gpu_message(name: str) -> str:
    """'unknown GPU ... (did you mean ...?); known: ...' for an error naming the key."""
    spellings = _lookup_names()
    hint = did_you_mean(_norm(name), spellings, cutoff=0.5, shown=spellings)
    return f"unknown GPU {name!r}{hint}; known: {', '.join(gpu_table())}"


def get_gpu(name: str) -> GPU:
    """The table entry for ``name``; raises KeyError with :func:`unknown_gpu_message` when unknown."""
    canon = canonical_gpu(name)
    if canon is None:
        raise KeyError(unknown_gpu_message(name))
    return gpu_table()[canon]
