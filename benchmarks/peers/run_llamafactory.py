"""LLaMA-Factory's training entry point (what ``llamafactory-cli train config.yaml`` calls), run in
its own venv and driven by the benchmark's spec file; the probe is passed as a callback.

    <llamafactory venv>/bin/python run_llamafactory.py SPEC.json
"""

from __future__ import annotations

import json
import sys

spec = json.load(open(sys.argv[1]))
sys.path.insert(0, spec["probe_dir"])

from llamafactory.train.tuner import run_exp  # noqa: E402

from probe import Probe  # noqa: E402

lora = spec["adapter"] == "lora"
args = {
    "stage": spec.get("stage", "sft"), "do_train": True, "model_name_or_path": spec["model"],
    "dataset": spec["lf_dataset"], "dataset_dir": spec["lf_dataset_dir"], "template": "chatml",
    "finetuning_type": "lora" if lora else "full", "cutoff_len": spec["seq"],
    "per_device_train_batch_size": spec["batch"], "gradient_accumulation_steps": 1, "max_steps": spec["steps"],
    "learning_rate": spec["lr"], "lr_scheduler_type": "cosine",
    "warmup_ratio": 0.1 if spec.get("stage") == "dpo" else 0.05, "bf16": spec["bf16"],
    "output_dir": spec["out"], "overwrite_output_dir": True, "overwrite_cache": True, "logging_steps": 1,
    "save_strategy": "no", "report_to": "none", "disable_tqdm": True, "plot_loss": False, "seed": 42,
    "use_cpu": True, "trust_remote_code": False,
    # LLaMA-Factory checkpoints activations by default (less memory, ~1/3 more compute); --lf-no-gc turns it off
    "disable_gradient_checkpointing": not spec.get("lf_gradient_checkpointing", True),
}
if lora:
    args.update({"lora_rank": 16, "lora_alpha": 32, "lora_dropout": 0.05, "lora_target": "all"})
if spec.get("stage") == "dpo":
    args.update({"pref_beta": 0.1, "pref_loss": "sigmoid"})
run_exp(args, callbacks=[Probe(spec["result"], spec["pad_id"])])
