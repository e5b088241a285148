"""The merge-method table (``methods.yaml``): one row per method, read once, no per-name code."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from tunesmith.config.yaml_load import load_table
from tunesmith.errors import TunesmithError
from tunesmith.errors import did_you_mean


@dataclass(frozen=True)
class MergeMethod:
    """How one method is run: mergekit's name for full models; for LoRA adapters, ``adapters`` (methods.yaml)."""

    name: str
    mergekit: str
    adapters: str | None  # "cat" | "deltas" | None (folded into full models, merged with mergekit)
    base: bool
    min_sources: int
    max_sources: int | None
    params: dict[str, float] = field(default_factory=dict)
    summary: str = ""
    task_vectors: dict[str, Any] = field(default_factory=dict)  # "deltas": sparsify, rescale, consensus, normalize

    def check_count(self, count: int) -> None:
        if count < self.min_sources or (self.max_sources is not None and count > self.max_sources):
            wanted = str(self.min_sources) if self.max_sources == self.min_sources else f"at least {self.min_sources}"
            raise TunesmithError(f"--method {self.name} merges {wanted} models, got {count}"
                                 + ("; merge two at a time or use linear/ties" if self.max_sources else ""))


@cache
def methods() -> dict[str, MergeMethod]:
    """Every method of ``methods.yaml`` by name."""
    text = (resources.files("tunesmith.merge") / "methods.yaml").read_text("utf-8")
    rows: dict[str, dict[str, Any]] = load_table(text)
    return {name: MergeMethod(name=name, mergekit=row["mergekit"], adapters=row["adapters"], base=bool(row["base"]),
                              min_sources=int(row["sources"]["min"]), max_sources=row["sources"]["max"],
                              params={k: float(v) for k, v in (row.get("params") or {}).items()},
                              summary=row.get("summary", ""), task_vectors=dict(row.get("task_vectors") or {}))
            for name, row in rows.items()}


def method(name: str) -> MergeMethod:
    """The method called ``name``; an unknown name fails with the known ones and a did-you-mean."""
    table = methods()
    if name in table:
        return table[name]
    raise TunesmithError(f"--method '{name}' is not a merge method ({', '.join(table)}){did_you_mean(name, table)}")
