"""``merge.combine(options)``: merge several fine-tunes of one base, then score the result against them.

Every refusal (unknown method, wrong number of sources, different architectures, tokenizers or
templates, no eval task to judge the merge by, an existing output folder) happens before any
weight is read. The merged folder is a standalone model like ``merge.run``'s, plus
``merge_report.json`` and, for mergekit merges, the ``mergekit_config.yml`` that produced it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.merge import outputs
from tunesmith.merge.backends import BACKENDS, ROUTES, Plan, check_adapters, require_mergekit
from tunesmith.merge.compare import Comparison, evaluate_merge
from tunesmith.merge.methods import MergeMethod, method, methods
from tunesmith.merge.run import MergeResult, probe_prompts
from tunesmith.merge.sources import Source, check_compatible, common_base, resolve, same_base

REPORT = "merge_report.json"


@dataclass(frozen=True)
class CombineOptions:
    sources: tuple[Path, ...]
    method: str
    out_dir: Path
    weights: tuple[float, ...] | None = None  # default: 1/N each
    density: float | None = None  # ties / dare_*: the share of each task vector kept
    t: float | None = None  # slerp: 0 = the first source, 1 = the second
    base: str | None = None  # the common base (default: the one the sources recorded)
    full_models: bool = False  # adapters: fold them and merge full models with mergekit
    seed: int = 42  # DARE's random drop
    probes: int = 5  # prompts for the fold check of a combination of adapters
    overwrite: bool = False


@dataclass
class CombineResult:
    output_dir: Path
    method: str
    backend: str
    sources: list[str]
    weights: list[float]
    params: dict[str, float]
    check: MergeResult | None
    comparison: Comparison
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        check = None if self.check is None else {"max_abs_diff": self.check.max_abs_diff,
                                                 "tolerance": self.check.tolerance, "passed": self.check.passed}
        return {"output_dir": str(self.output_dir), "method": self.method, "backend": self.backend,
                "sources": self.sources, "weights": self.weights, "params": self.params, "fold_check": check,
                "comparison": self.comparison.to_dict(), "seconds": round(self.seconds, 2), "notes": self.notes}


def combine(options: CombineOptions) -> CombineResult:
    """Merge ``options.sources`` with ``options.method`` into ``options.out_dir`` and evaluate the merge."""
    t0 = time.perf_counter()
    plan, backend = prepare(options)
    out = options.out_dir
    # prepare refused an existing folder unless --overwrite; the merge is written, checked and evaluated beside it
    # and renamed in only once its check passed (merge/outputs.py)
    with outputs.Replacing(out) as replacing:
        building = replacing.building
        check = BACKENDS[backend](plan, building)
        passed = check is None or check.passed
        where = replacing.destination(passed)  # a fold that differs from its adapters goes to <out>.failed
        comparison = evaluate_merge(plan.sources, building, building / "eval", recorded=where)
        result = CombineResult(where, plan.method.name, backend, [s.label for s in plan.sources], plan.weights,
                               plan.params, check, comparison, time.perf_counter() - t0, plan.notes)
        (building / REPORT).write_text(json.dumps(result.to_dict(), indent=2), "utf-8")
        result.output_dir = replacing.finish(passed)
        if check is not None:
            check.output_dir = result.output_dir
    return result


def prepare(options: CombineOptions) -> tuple[Plan, str]:
    """The checked plan and the backend that runs it; raises on anything that would fail later."""
    chosen = method(options.method)
    chosen.check_count(len(options.sources))
    _check_out(options)
    sources = resolve(list(options.sources))
    check_compatible(sources)
    adapters = all(s.kind == "adapter" for s in sources)
    route = chosen.adapters if adapters and not options.full_models else None
    backend = ROUTES.get(str(route), "mergekit")  # adapters combined as adapters (PEFT's cat, or layer deltas)
    if backend == "mergekit":
        require_mergekit()
    base = common_base(sources, options.base) if chosen.base or backend != "mergekit" else None
    _protect_bases(options.out_dir, [options.base, *(s.base for s in sources)])
    owners = _eval_owners(sources)
    prompts, notes = _system_prompt(sources)
    plan = Plan(chosen, sources, _weights(chosen, options), _params(chosen, options), base, options.seed,
                probe_prompts(owners[0].config, options.probes), prompts, notes)
    if base is None and (note := _different_bases(sources)):
        plan.notes.append(note)
    if backend != "mergekit":
        check_adapters(plan)
    elif adapters and chosen.adapters is None:
        plan.notes.append(f"{chosen.name} does not combine adapters as adapters: they were folded into full models "
                          "and merged with mergekit")
    return plan, backend


def _check_out(options: CombineOptions) -> None:
    out = options.out_dir.resolve()
    if any(out == Path(s).resolve() or Path(s).resolve().is_relative_to(out) for s in options.sources):
        raise TunesmithError(f"--out {options.out_dir}: is (or holds) a source; merge into a new folder")
    if out.exists() and not out.is_dir():
        raise TunesmithError(f"--out {options.out_dir}: is a file; name a folder")
    outputs.refuse_cwd(options.out_dir)
    if out.exists() and any(out.iterdir()) and not options.overwrite:
        raise TunesmithError(f"--out {options.out_dir}: already exists and is not empty; pass --overwrite to replace "
                             "it or choose another folder")


def _different_bases(sources: list[Source]) -> str | None:
    """Said when a method that needs no common base merges fine-tunes of different bases (a blend of two
    models, not a combination of task vectors of one)."""
    bases = {same_base(s.base) for s in sources if s.base}
    if len(bases) < 2:
        return None
    return (f"the sources were fine-tuned from different bases ({', '.join(sorted(bases))}): the merge blends "
            "different models rather than combining task vectors of one base")


def _protect_bases(out_dir: Path, bases: list[str | None]) -> None:
    """--out must not be (or hold) a base the sources load on: --overwrite would delete it first."""
    out = out_dir.resolve()
    for base in {b for b in bases if b and Path(b).is_dir()}:
        if out == Path(base).resolve() or Path(base).resolve().is_relative_to(out):
            raise TunesmithError(f"--out {out_dir}: is (or holds) {base}, the base the sources load on; merge into "
                                 "a new folder")


def _weights(chosen: MergeMethod, options: CombineOptions) -> list[float]:
    n = len(options.sources)
    if "t" in chosen.params:  # an interpolation between two models takes a position, not weights
        if options.weights is not None:
            raise TunesmithError(f"--weights: {chosen.name} interpolates between two models; set the position with --t")
        return []
    if options.weights is None:
        return [1.0 / n] * n
    if len(options.weights) != n or any(not math.isfinite(w) or w < 0 for w in options.weights) \
            or sum(options.weights) <= 0:
        raise TunesmithError(f"--weights: need {n} finite non-negative numbers with a positive sum (one per source), "
                             f"got {list(options.weights)}")
    return [float(w) / sum(options.weights) for w in options.weights]  # relative, as mergekit normalises them


def _params(chosen: MergeMethod, options: CombineOptions) -> dict[str, float]:
    params = dict(chosen.params)
    for name, value in (("density", options.density), ("t", options.t)):
        if value is None:
            continue
        if name not in params:
            takers = [m.name for m in methods().values() if name in m.params]
            raise TunesmithError(f"--{name}: {chosen.name} takes no {name} (it applies to {', '.join(takers)})")
        in_range = 0 < value <= 1 if name == "density" else 0 <= value <= 1  # a density of 0 keeps nothing
        if not in_range:
            raise TunesmithError(f"--{name}: must be in {'(0, 1]' if name == 'density' else '[0, 1]'} (got {value})")
        params[name] = float(value)
    return params


def _eval_owners(sources: list[Source]) -> list[Source]:
    """The sources whose run config has eval tasks; a merge with nothing to be judged by is refused."""
    owners = [s for s in sources if s.config is not None and s.config.eval_tasks]
    if not owners:
        where = ", ".join(str(s.config_path or f"{s.path} (no config.yaml)") for s in sources)
        raise TunesmithError(f"no source has eval_tasks in its run config ({where}); a merge is judged by each "
                             "source's held-out tasks - add eval_tasks to the configs the sources were trained with")
    for owner in owners:
        for spec in owner.config.eval_tasks:  # type: ignore[union-attr]
            local = Path(spec.path)
            if (local.is_absolute() or local.suffix) and not local.exists():
                raise TunesmithError(f"{owner.config_path}: eval task {spec.name!r}: {spec.path} does not exist")
    return owners


def _system_prompt(sources: list[Source]) -> tuple[str | None, list[str]]:
    prompts = {s.label: s.info.get("system_prompt", s.config.system_prompt if s.config else None) for s in sources}
    if len(set(prompts.values())) == 1:
        return next(iter(prompts.values())), []
    return None, [f"the sources were trained with different system prompts ({prompts}); the merged model records "
                  "none - each task is still evaluated with its own source's prompt"]
