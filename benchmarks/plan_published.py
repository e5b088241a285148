"""`tunesmith plan`'s estimate vs published GPU memory figures for fine-tuning.

Published figures (all "estimated" by their authors, for one GPU):
* LLaMA-Factory README, "Hardware Requirement" table (hiyouga/LLaMA-Factory): 7B / 14B / 30B / 70B,
  Full AMP (fp32 master weights + 16-bit compute) 120/240/600/1200 GB ("18x"), pure bf16
  60/120/300/600 GB ("8x"), LoRA (16-bit base) 16/32/64/160 GB ("2x"), QLoRA 8-bit
  10/20/40/80 GB ("x"), QLoRA 4-bit 6/12/24/48 GB ("x/2").
* The seed's VRAM table: 7B full fine-tune in mixed precision with AdamW ~120 GB, LoRA 7B ~16 GB,
  QLoRA 7B 6-10 GB (compared with the middle, 8 GB).
* QLoRA paper (Dettmers et al. 2023, abstract): a 65B model fine-tuned on a single 48 GB GPU
  (4-bit NF4 + double quantisation, LoRA r 64 on every linear layer, paged optimizer, gradient
  checkpointing); compared with 48 GB as the figure.

The workload is not stated by the tables; the estimate uses one sequence of 1,024 tokens
(micro batch 1) with gradient checkpointing, LLaMA-Factory's default, and the dtypes the row
names (--weights). Models (shapes from plan/known_models.yaml), all of the LLaMA family as in
LLaMA-Factory's first table (7B / 13B / 30B / 65B): Llama-2-7B, Llama-2-13B for the 14B column,
LLaMA-30B, Llama-2-70B, LLaMA-65B. Prints each ratio estimate / published.

    .venv/bin/python benchmarks/plan_published.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tunesmith.plan.adapters import AdapterSettings, trainable
from tunesmith.plan.memory import GIB, Setup, estimate
from tunesmith.plan.shapes import model_shape

GB = 1e9  # the tables say GB; compared in bytes
SIZES = {"7B": "meta-llama/Llama-2-7b-hf", "14B": "meta-llama/Llama-2-13b-hf", "30B": "huggyllama/llama-30b",
         "70B": "meta-llama/Llama-2-70b-hf"}
# Shown for context, not compared: a 14B with a 152k vocabulary (PEFT's k-bit preparation keeps its
# 1.6B embedding + lm_head parameters in fp32, 6.2 GB by themselves).
CONTEXT = {"14B": "Qwen/Qwen2.5-14B-Instruct"}
# row: (source, adapter, weights, mixed, optimizer, published GB per size)
LLAMA_FACTORY = [
    ("Full (bf16 or fp16 AMP, 32-bit master)", "none", "fp32", True, "adamw_torch", [120, 240, 600, 1200]),
    ("Full (pure_bf16)", "none", "bf16", False, "adamw_torch", [60, 120, 300, 600]),
    ("LoRA (16-bit base)", "lora", "bf16", False, "adamw_torch", [16, 32, 64, 160]),
    ("QLoRA 8-bit", "qlora", "int8", True, "adamw_torch", [10, 20, 40, 80]),
    ("QLoRA 4-bit", "qlora", "nf4", True, "adamw_torch", [6, 12, 24, 48]),
]
SEED = [
    ("seed: 7B full fine-tune, mixed precision, AdamW", "meta-llama/Llama-2-7b-hf", "none", "fp32", True, 8, 120),
    ("seed: LoRA 7B", "meta-llama/Llama-2-7b-hf", "lora", "bf16", False, 8, 16),
    ("seed: QLoRA 7B (6-10 GB)", "meta-llama/Llama-2-7b-hf", "qlora", "nf4", True, 8, 8),
    ("QLoRA paper: 65B on one 48 GB GPU", "huggyllama/llama-65b", "qlora", "nf4", True, 64, 48),
]


def peak(model: str, adapter: str, weights: str, mixed: bool, optimizer: str = "adamw_torch", r: int = 8,
         seq: int = 1024) -> float:
    shape = model_shape(model)
    train = trainable(shape, AdapterSettings(adapter, r, "all-linear", None, 20))
    setup = Setup(method="sft", adapter=adapter, weights=weights, mixed=mixed, optimizer=optimizer,
                  gradient_checkpointing=True, micro_batch=1, seq_len=seq, mask=False, lora_r=r, lora_dropout=0.05,
                  num_virtual_tokens=20, device="gpu")
    return estimate(shape, train, setup).peak_bytes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = []
    print(f"{'published figure':48s} {'size':>4s} {'published GB':>12s} {'estimate GB':>11s} {'ratio':>6s}")
    for label, adapter, weights, mixed, optimizer, figures in LLAMA_FACTORY:
        for (size, model), published in zip(SIZES.items(), figures):
            est = peak(model, adapter, weights, mixed, optimizer)
            rows.append({"figure": f"LLaMA-Factory: {label}", "size": size, "model": model, "published_gb": published,
                         "estimate_gb": est / GB, "estimate_gib": est / GIB, "ratio": est / GB / published})
    for label, adapter, weights, mixed, optimizer, figures in LLAMA_FACTORY:
        for size, model in CONTEXT.items():
            est = peak(model, adapter, weights, mixed, optimizer)
            published = figures[list(SIZES).index(size)]
            print(f"  context, not compared: {label} {model}: {est / GB:.1f} GB vs {published} GB")
    for label, model, adapter, weights, mixed, r, published in SEED:
        optimizer = "paged_adamw_32bit" if "paper" in label else "adamw_torch"
        seq = 512 if "paper" in label else 1024
        est = peak(model, adapter, weights, mixed, optimizer, r, seq)
        rows.append({"figure": label, "size": "65B" if "65b" in model else "7B", "model": model,
                     "published_gb": published, "estimate_gb": est / GB, "estimate_gib": est / GIB,
                     "ratio": est / GB / published})
    for row in rows:
        print(f"{row['figure'][:48]:48s} {row['size'][:4]:>4s} {row['published_gb']:12.0f} {row['estimate_gb']:11.1f} "
              f"{row['ratio']:6.2f}")
    worst = max(abs(r["ratio"] - 1) for r in rows)
    print(f"largest deviation: {100 * worst:.0f} %")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
