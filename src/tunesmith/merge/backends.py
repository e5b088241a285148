"""The ways a merge runs: mergekit over full models; over LoRA adapters, PEFT's add_weighted_adapter 'cat' or
the method on each layer's delta (merge/deltas.py).

``BACKENDS`` is the table ``combine`` picks from; each takes a ``Plan`` and writes a standalone
model folder (weights, tokenizer, chat template, generation config, tunesmith_model.json).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.data.records import Message
from tunesmith.errors import TunesmithError
from tunesmith.merge.deltas import run_deltas
from tunesmith.merge.methods import MergeMethod
from tunesmith.merge.run import MergeResult
from tunesmith.merge.sources import Source

MERGEKIT_HINT = "mergekit is not installed: pip install 'tunesmith[merge]'"


@dataclass
class Plan:
    """Everything a backend needs, decided and checked before any weight is read."""

    method: MergeMethod
    sources: list[Source]
    weights: list[float]
    params: dict[str, float]
    base: str | None
    seed: int
    probes: Sequence[Sequence[Message]] = ()
    system_prompt: str | None = None
    notes: list[str] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        """``tunesmith_model.json`` of the result: no base to load it on, the template and system prompt."""
        first = self.sources[0].info
        return {"base_model": None, "chat_template": first.get("chat_template"), "system_prompt": self.system_prompt,
                "merged_from": [str(s.folder.resolve()) for s in self.sources], "merge_method": self.method.name,
                "merge_weights": self.weights, "merge_params": self.params}


def require_mergekit() -> None:
    import importlib.util

    if importlib.util.find_spec("mergekit") is None:
        raise TunesmithError(MERGEKIT_HINT)


def mergekit_config(plan: Plan, model_dirs: list[str], dtype: str) -> dict[str, Any]:
    """mergekit's merge configuration (the YAML ``mergekit-yaml`` reads) for this plan, as data."""
    per_model = {k: v for k, v in plan.params.items() if k == "density"}
    global_params = {k: v for k, v in plan.params.items() if k != "density"}
    config: dict[str, Any] = {
        "merge_method": plan.method.mergekit,
        "models": [{"model": d, "parameters": {"weight": w, **per_model}} for d, w in zip(model_dirs, plan.weights)],
        "dtype": "float32", "out_dtype": dtype,
    }
    if plan.method.base:
        config["base_model"] = plan.base
    if plan.method.mergekit == "slerp":  # mergekit's slerp runs from base_model (t=0) to the other model (t=1)
        config["base_model"] = model_dirs[0]
        config["models"] = [{"model": d} for d in model_dirs]
    if global_params:
        config["parameters"] = global_params
    return config


def run_mergekit(plan: Plan, out: Path) -> MergeResult | None:
    """Fold adapter sources into full models (a work folder), merge the full models with mergekit."""
    import torch
    import yaml
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    work = out / ".work"
    dirs = [str(_fold(s, work / s.label)) if s.kind == "adapter" else str(s.folder) for s in plan.sources]
    config = mergekit_config(plan, dirs, _dtype(dirs[0]))
    merge_config = MergeConfiguration.model_validate(config)
    with torch.random.fork_rng():  # DARE drops at random: reproducible, without touching the caller's RNG
        torch.manual_seed(plan.seed)
        run_merge(merge_config, str(out), MergeOptions(quiet=True, copy_tokenizer=False, write_model_card=False))
    (out / "mergekit_config.yml").write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")
    shutil.rmtree(work, ignore_errors=True)
    _finish(plan, out)
    return None


def load_sources(plan: Plan) -> tuple[Any, list[str]]:
    """The common base (float32) with every source adapter loaded on it, and the adapters' names."""
    import torch

    from tunesmith.models.load import base_overrides, check_base, load_adapter, load_pretrained

    for source in plan.sources:
        check_base(source.folder, str(plan.base))
    overrides = [base_overrides(source.folder) for source in plan.sources]
    for source, own in zip(plan.sources, overrides):  # one base cannot hold two RoPE scalings
        if own != overrides[0]:
            raise TunesmithError(f"{source.folder} and {plan.sources[0].folder} were trained on differently "
                                 f"configured bases ({own or 'as it is'} vs {overrides[0] or 'as it is'}): they "
                                 "cannot be merged on one base")
    model = load_pretrained(str(plan.base), {"dtype": torch.float32}, overrides=overrides[0])
    names = [f"source{i}" for i in range(len(plan.sources))]
    for name, source in zip(names, plan.sources):
        model = load_adapter(model, source.folder, adapter_name=name)
    return model, names


def probe_ids(plan: Plan) -> tuple[Any, list[list[int]]]:
    """The first source's tokenizer and the fold check's probe prompts rendered with it (training template)."""
    from tunesmith import infer
    from tunesmith.tokenize import load_saved

    tokenizer = load_saved(plan.sources[0].folder)
    return tokenizer, [infer.prompt_ids(tokenizer, p, plan.system_prompt) for p in plan.probes]


def run_peft(plan: Plan, out: Path) -> MergeResult:
    """Combine LoRA adapters with PEFT's 'cat' (the exact weighted sum of their deltas), fold it, check the fold."""
    import time

    from tunesmith.merge.run import TOLERANCE, _compare, _logits
    from tunesmith.train.artifacts import save_result

    t0 = time.perf_counter()
    model, names = load_sources(plan)
    model.add_weighted_adapter(names, list(plan.weights), "merged", combination_type=str(plan.method.adapters))
    model.set_adapter("merged")
    for name in names:
        model.delete_adapter(name)
    model.eval()
    tokenizer, ids = probe_ids(plan)
    expected = _logits(model, ids)  # the combined adapter, before folding changes the base weights
    save_result(model.merge_and_unload(), tokenizer, out, plan.info())
    return _compare(out, ids, expected, TOLERANCE, t0)


def check_adapters(plan: Plan) -> None:
    """What combining adapters as adapters needs, checked before any weight is read: LoRA, weight deltas only."""
    configs = {s.label: json.loads((s.folder / "adapter_config.json").read_text("utf-8")) for s in plan.sources}
    kinds = {label: c.get("peft_type") for label, c in configs.items()}
    if any(k != "LORA" for k in kinds.values()):
        raise TunesmithError(f"only LoRA adapters can be combined ({kinds}); merge the full models instead "
                             "(tunesmith merge CONFIG folds one adapter into its base)")
    extras = {label: found for label, c in configs.items()
              if (found := [k for k in ("use_dora", "lora_bias", "modules_to_save", "target_parameters") if c.get(k)])}
    if extras:
        raise TunesmithError(f"adapters with more than LoRA weight deltas ({extras}) cannot be combined as adapters; "
                             "pass --full-models to fold each into its base and merge the full models with mergekit")


def _fold(source: Source, dest: Path) -> Path:
    """The adapter folded into its base, saved as a full model (mergekit reads full checkpoints)."""
    from tunesmith import infer
    from tunesmith.train.artifacts import save_result

    loaded = infer.load(source.folder, base_model=source.base)
    save_result(loaded.model.merge_and_unload(), loaded.tokenizer, dest)
    return dest


def _dtype(model_dir: str) -> str:
    config = json.loads((Path(model_dir) / "config.json").read_text("utf-8"))
    return str(config.get("dtype") or config.get("torch_dtype") or "float32")


def _finish(plan: Plan, out: Path) -> None:
    """tunesmith's files next to mergekit's weights: tokenizer, template, generation config, model info."""
    from tunesmith.tokenize import load_saved

    first = plan.sources[0].folder
    tokenizer = load_saved(first)
    tokenizer.save_pretrained(out)
    if tokenizer.chat_template:
        (out / "chat_template.jinja").write_text(tokenizer.chat_template, "utf-8")
    if (first / "generation_config.json").is_file():
        shutil.copyfile(first / "generation_config.json", out / "generation_config.json")
    (out / "tunesmith_model.json").write_text(json.dumps(plan.info(), indent=2), "utf-8")


# a methods.yaml `adapters` route -> its backend (the name the report gives it)
ROUTES = {"cat": "peft", "deltas": "adapter-deltas"}
BACKENDS: dict[str, Callable[[Plan, Path], MergeResult | None]] = {"mergekit": run_mergekit, "peft": run_peft,
                                                                   "adapter-deltas": run_deltas}
