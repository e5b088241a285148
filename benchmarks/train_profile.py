"""Where a tunesmith training step spends its time: torch.profiler over steps 3..N of the 24M job
(bench_assets.llama24m, the alpaca demo as chat, LoRA r 16, sequence 512, micro batch 4), with
the speed-ups off (transformers' plain path: padded batches, LM head over every position) or on.
Both runs see the same batches (same seed and data order).

``--method dpo``: the DPO job of ``train_throughput.py --method dpo`` (dpo_en_demo pairs, beta 0.1,
sigmoid); off is TRL's own DPOTrainer loss (padded [chosen; rejected] batch, TRL's fused LM head),
on is tunesmith's fast DPO path (``train/dpo.py``).

    .venv/bin/python benchmarks/train_profile.py --speedups off|on [--method sft|dpo] [--steps 8] [--rows 25]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_assets as assets  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    import torch
    from transformers import TrainerCallback

    from tunesmith.config import config_from_dict
    from tunesmith.train import run

    parser = argparse.ArgumentParser()
    parser.add_argument("--speedups", choices=["off", "on"], required=True)
    parser.add_argument("--method", choices=["sft", "dpo"], default="sft")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rows", type=int, default=25, help="rows of the op table")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "tunesmith-bench")
    args = parser.parse_args()

    class Profile(TrainerCallback):
        def __init__(self) -> None:
            self.prof: torch.profiler.profile | None = None
            self.starts: list[float] = []

        def on_step_begin(self, a, state, control, **kw):  # type: ignore[no-untyped-def]
            self.starts.append(time.perf_counter())
            if state.global_step == 2:
                self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                self.prof.__enter__()

        def on_train_end(self, a, state, control, **kw):  # type: ignore[no-untyped-def]
            self.starts.append(time.perf_counter())
            if self.prof is not None:
                self.prof.__exit__(None, None, None)
                print(self.prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
            steps = [b - a for a, b in zip(self.starts, self.starts[1:])]
            print("step seconds:", " ".join(f"{s:.2f}" for s in steps))

    data = assets.sft_data(args.cache)
    on = args.speedups == "on"
    out = Path(tempfile.mkdtemp(prefix="tunesmith-profile-"))
    config = config_from_dict({
        "base_model": str(assets.llama24m(args.cache)), "output_dir": str(out), "sequence_len": 512,
        "micro_batch_size": 4, "max_steps": args.steps,
        **({"method": "dpo", "datasets": [{"path": str(data["dpo"]), "type": "preference"}], "learning_rate": 5e-6,
            "warmup_ratio": 0.1} if args.method == "dpo" else
           {"datasets": [{"path": str(data["chat"]), "type": "chat"}], "learning_rate": 2e-4}),
        "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "bf16": False, "seed": 42,
        "padding_free": on, "fused_loss": on,
    })
    run(config, overwrite=True, quiet=True, say=lambda s: None, callbacks=[Profile()])


if __name__ == "__main__":
    main()
