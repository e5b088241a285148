"""``merge.run(config)``: merge the run's adapter into the base, save it, and verify the logits.

The check is the point: a merged model that silently differs from its adapter (wrong scale,
adapter saved from the wrong step, a dtype round-trip) ships a model nobody evaluated. The
merged folder is reloaded from disk and its logits on probe prompts are compared with the
adapter model's; the largest absolute difference is reported and must stay under ``tolerance``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config import Config
from tunesmith.data.records import Message
from tunesmith.errors import TunesmithError
from tunesmith.merge import outputs

TOLERANCE = 1e-3  # float32 merge rounding moves logits by ~1e-5; a wrong merge (scale, weights) by >= 1e-1


class MergeCheckFailed(TunesmithError):
    """The merged model's logits differ from the adapter model's."""


@dataclass
class MergeResult:
    output_dir: Path
    max_abs_diff: float
    tolerance: float
    prompts: int
    seconds: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def run(config: Config, probes: Sequence[Sequence[Message]], *, adapter_dir: Path | None = None,
        out_dir: Path | None = None, tolerance: float = TOLERANCE) -> MergeResult:
    """Merge ``adapter_dir`` (default: the run's ``model/``) into ``out_dir`` (default ``merged/``) and check it.

    ``probes`` are conversations ending with a user turn, rendered with the training template
    and ``config.system_prompt``. Returns the result whether or not the check passed; callers
    decide (``MergeResult.passed``, ``raise_if_failed``).
    """
    from tunesmith import infer
    from tunesmith.train.artifacts import save_result

    t0 = time.perf_counter()
    _require(probes)
    folder = infer.resolve_model_dir(adapter_dir or Path(config.output_dir), prefer=("", "model", "run/model"))
    out_dir = out_dir or Path(config.output_dir) / "merged"
    outputs.refuse_cwd(out_dir)  # before the model is loaded
    loaded = infer.load(folder, base_model=config.base_model)
    if loaded.kind != "adapter":
        raise TunesmithError(f"{folder}: not an adapter (no adapter_config.json): nothing to merge")
    if loaded.model.peft_config["default"].is_prompt_learning:
        raise TunesmithError(f"{folder}: a {loaded.model.peft_config['default'].peft_type.value} adapter adds virtual "
                             "tokens instead of weight deltas, so it cannot be merged; serve it as an adapter")
    ids = [infer.prompt_ids(loaded.tokenizer, p, config.system_prompt) for p in probes]
    expected = _logits(loaded.model, ids)  # before merge_and_unload changes the base weights in place
    info = {**infer.info(folder), "base_model": None, "merged_from": str(folder.resolve())}
    # only a merge that passed its check is where export, chat and serve look for one (``merged/``); a failed one
    # is kept beside it for inspection, under a name nothing loads by default (merge/outputs.py)
    with outputs.Replacing(out_dir) as replacing:  # written and checked beside merged/, renamed in once it passed
        save_result(loaded.model.merge_and_unload(), loaded.tokenizer, replacing.building, info)
        result = _compare(replacing.building, ids, expected, tolerance, t0)
        result.output_dir = replacing.finish(result.passed)
    return result


def verify(config: Config, probes: Sequence[Sequence[Message]], *, adapter_dir: Path, merged_dir: Path,
           tolerance: float = TOLERANCE) -> MergeResult:
    """Load the adapter model and the merged folder from disk and compare their logits on ``probes``."""
    from tunesmith import infer

    t0 = time.perf_counter()
    _require(probes)
    adapter = infer.load(adapter_dir, base_model=config.base_model)
    ids = [infer.prompt_ids(adapter.tokenizer, p, config.system_prompt) for p in probes]
    return _compare(merged_dir, ids, _logits(adapter.model, ids), tolerance, t0)


def _require(probes: Sequence[Sequence[Message]]) -> None:
    if not probes:
        raise TunesmithError("merge: the check needs at least one probe prompt")


def _compare(merged_dir: Path, ids: list[list[int]], expected: list[Any], tolerance: float, t0: float) -> MergeResult:
    """Reload the merged folder from disk and compare its logits with ``expected``."""
    from tunesmith import infer

    actual = _logits(infer.load(merged_dir).model, ids)
    diff = max(float((a - e).abs().max()) for a, e in zip(actual, expected))
    return MergeResult(merged_dir, diff, tolerance, len(ids), time.perf_counter() - t0)


def probe_prompts(config: Config, count: int = 5) -> list[list[Message]]:
    """Prompts for the check: held-out task prompts taken in turn from each task, else training prompts."""
    from itertools import zip_longest

    from tunesmith.data import ingest

    specs = [[t.dataset()] for t in config.dataset_tasks] or [list(config.datasets)]
    groups = [ingest(group).records for group in specs]
    mixed = [r for row in zip_longest(*groups) for r in row if r is not None and r.messages]
    return [list(r.messages[:-1]) if r.messages[-1].role == "assistant" else list(r.messages)
            for r in mixed[:count]]


def raise_if_failed(result: MergeResult) -> None:
    if not result.passed:
        raise MergeCheckFailed(
            f"merged model {result.output_dir} differs from its adapter: max |logit diff| "
            f"{result.max_abs_diff:.3g} > {result.tolerance:g} on {result.prompts} prompts; do not ship it"
        )


def _logits(model: Any, prompts: list[list[int]]) -> list[Any]:
    import torch

    with torch.inference_mode():
        return [model(input_ids=torch.tensor([p])).logits[0].float() for p in prompts]
