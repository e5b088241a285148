"""The frozen-trunk cache (``trunk_cache``, train/trunk.py) on a real fine-tuning job: the same config
trained twice in one process, cache off then on, same seed and data order. Prints the seconds
spent in training steps per epoch, the whole ``train_runtime`` of each, the ratio on/off, and the
largest relative difference between the two loss curves (the cache is exact: ~0).

The demo's job: ``quickstart.yaml`` of a ``tunesmith quickstart`` output (SmolLM2-135M-Instruct,
LoRA r 16 on layers 22..29 of 30, packed rows of 256, micro batch 2). Its relative data paths are
read from the folder the quickstart ran in (``--cwd``).

    cd /work/main && .venv/bin/python benchmarks/trunk_cache.py --config outputs/quickstart/quickstart.yaml \\
        --out /tmp/trunk-bench [--set base_model=...] [--set num_epochs=3]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def timed_run(config_path: Path, overrides: list[str], setting: bool, out: Path) -> dict[str, Any]:
    from transformers import TrainerCallback

    from tunesmith.config import load_config
    from tunesmith.train import run

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.epochs: dict[int, float] = {}
            self.began = 0.0

        def on_step_begin(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
            self.began = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
            epoch = int(state.epoch - 1e-9) if state.epoch else 0
            self.epochs[epoch] = self.epochs.get(epoch, 0.0) + time.perf_counter() - self.began

    sets = [*overrides, f"trunk_cache={str(setting).lower()}", f"output_dir={out / str(setting)}",
            "overwrite_output_dir=true"]
    config = load_config(config_path, sets)
    clock = StepClock()
    result = run(config, quiet=True, say=lambda s: None, callbacks=[clock])
    record = json.loads((result.output_dir / "run.json").read_text())
    curve = [json.loads(line).get("loss") for line in (result.output_dir / "metrics.jsonl").read_text().splitlines()]
    return {"epochs": clock.epochs, "train_runtime_s": record.get("train_runtime_s"),
            "trunk_cache": record.get("trunk_cache"), "losses": [x for x in curve if x is not None]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", action="append", default=[], help="key=value, as tunesmith train --set")
    args = parser.parse_args()
    runs = {setting: timed_run(args.config, args.set, setting, args.out) for setting in (False, True)}
    off, on = runs[False], runs[True]
    for name, r in (("off", off), ("on", on)):
        steps = " + ".join(f"{s:.1f}" for _, s in sorted(r["epochs"].items()))
        print(f"trunk_cache {name}: step seconds per epoch {steps} = {sum(r['epochs'].values()):.1f}; "
              f"train_runtime {r['train_runtime_s']:.1f} s")
    print("cache:", json.dumps({k: v for k, v in on["trunk_cache"].items() if k != "why"}))
    print(f"ratio on/off: steps {sum(on['epochs'].values()) / sum(off['epochs'].values()):.3f}, "
          f"train_runtime {on['train_runtime_s'] / off['train_runtime_s']:.3f}")
    later = [e for e in off["epochs"] if e > 0]
    if later:
        ratio = sum(on["epochs"][e] for e in later) / sum(off["epochs"][e] for e in later)
        print(f"ratio on/off of the epochs after the first (read from the cache): {ratio:.3f}")
    diffs = [abs(a - b) / max(abs(b), 1e-12) for a, b in zip(on["losses"], off["losses"])]
    print(f"loss curves: {len(on['losses'])} vs {len(off['losses'])} points, max relative difference "
          f"{max(diffs) if diffs else float('nan'):.2e}")


if __name__ == "__main__":
    main()
