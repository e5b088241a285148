"""LoRA throughput on the demo's real model: the quickstart recipe against LoRA on every layer, same run.

SmolLM2-135M-Instruct (the catalogue model, converted once from its GGUF), the quickstart's own
training data and settings (sequence 256, packing, micro batch, r, lr from ``recipe.yaml``), with
`tunesmith train` run for ``--steps`` steps per variant, variants interleaved ``--reps`` times:

- baseline: LoRA on all 7 linear projections of all 30 layers (``all-linear``);
- recipe:   LoRA on the same projections of the top layers only (``peft_layers_to_transform``),
            so the backward pass stops at the lowest adapted layer.

Throughput is real (non-padding) tokens per second of training (tokens seen / train_runtime).
Prints each repetition and the ratio recipe / baseline (best of the repetitions).

    .venv/bin/python benchmarks/pretrained_lora.py [--steps 12] [--reps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tokens_per_second(config, out: Path) -> float:
    from tunesmith.train import run

    run(config.model_copy(update={"output_dir": str(out)}), overwrite=True, quiet=True, say=lambda s: None)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    final = [m for m in metrics if "train_runtime" in m and "loss" not in m][-1]
    run_info = json.loads((out / "run.json").read_text())
    return run_info["tokenization"]["tokens"] * final["epoch"] / final["train_runtime"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()

    from tunesmith.quickstart import base, workspace

    model = base.pretrained(base.recipe()["pretrained"]["model"], say=print)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = workspace.write_data(root, "pretrained")
        recipe = workspace.build_config(model.path, files, root, "pretrained").model_copy(
            update={"max_steps": args.steps, "eval_datasets": [], "eval_tasks": [], "save_total_limit": None})
        variants = {
            "all 30 layers (baseline)": recipe.model_copy(update={"peft_layers_to_transform": None,
                                                                  "lora_target_modules": "all-linear"}),
            f"top {len(recipe.peft_layers_to_transform)} layers (recipe)": recipe,
        }
        best: dict[str, float] = {}
        for rep in range(args.reps):
            for i, (name, config) in enumerate(variants.items()):
                tps = tokens_per_second(config, root / f"run-{rep}-{i}")
                best[name] = max(best.get(name, 0.0), tps)
                print(f"rep {rep}: {name:28s} {tps:7.1f} real tokens/s", flush=True)
    baseline, recipe_tps = best.values()
    print(f"machine: {len(os.sched_getaffinity(0))} CPU cores; {args.steps} steps per run, best of {args.reps}")
    for name, tps in best.items():
        print(f"  {name:28s} {tps:7.1f} tokens/s  {tps / baseline:.2f}x")
    print(f"ratio recipe / baseline: {recipe_tps / baseline:.2f}x")


if __name__ == "__main__":
    main()
