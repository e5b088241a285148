"""Tokens/s of `tunesmith train` vs a plain TRL SFTTrainer script, measured in the same run.

Same base model (a small Llama built from a config), same chat data, same LoRA settings
(the seed's: r=16, alpha=32, all-linear, lr 2e-4, micro batch 4). Throughput is real
(non-padding) input tokens processed per second of training, after a warm-up of each path.
Prints ratios; absolute numbers are only meaningful within one run.

    .venv/bin/python benchmarks/train_throughput.py [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from tiny import build_model, build_tokenizer  # noqa: E402

CHATML = (ROOT / "src/tunesmith/tokenize/templates/chatml.jinja").read_text()


def make_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        words = " ".join(["the quick brown fox"] * (2 + i % 12))
        rows.append({"messages": [{"role": "user", "content": f"Question {i}: repeat {words}"},
                                  {"role": "assistant", "content": f"Sure here is {words} and more {i}."}]})
    return rows


def tunesmith_tps(base: Path, data: Path, out: Path, steps: int, packing: bool, bf16: bool) -> float:
    from tunesmith.config import config_from_dict
    from tunesmith.train import run

    cfg = config_from_dict({
        "base_model": str(base), "datasets": [{"path": str(data)}], "output_dir": str(out),
        "sequence_len": 512, "micro_batch_size": 4, "max_steps": steps, "learning_rate": 2e-4,
        "lora_r": 16, "sample_packing": packing, "bf16": bf16, "audit": {"fail_on": "never"},
    })
    run(cfg, overwrite=True, quiet=True, say=lambda s: None)
    metrics = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    final = [m for m in metrics if "train_runtime" in m and "loss" not in m][-1]
    run_info = json.loads((out / "run.json").read_text())
    real_tokens = run_info["tokenization"]["tokens"] * final["epoch"]  # real tokens, never bin padding
    return real_tokens / final["train_runtime"]


def trl_tps(base: Path, rows: list[dict], out: Path, steps: int) -> float:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    args = SFTConfig(
        output_dir=str(out), per_device_train_batch_size=4, max_steps=steps, learning_rate=2e-4,
        max_length=512, packing=False, use_cpu=True, bf16=False, gradient_checkpointing=False,
        report_to=[], logging_steps=1, save_strategy="no", include_num_input_tokens_seen="non_padding",
        disable_tqdm=True, assistant_only_loss=False, lr_scheduler_type="cosine", warmup_steps=0.05,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
    result = trainer.train()
    return trainer.state.num_input_tokens_seen / result.metrics["train_runtime"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=256)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tunesmith-bench-"))
    tok = build_tokenizer(tmp / "base", CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>",
                          pad_token="<|endoftext|>")
    build_model(tmp / "base", tok, hidden=args.hidden)
    rows = make_rows(400)
    data = tmp / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # warm up both paths (first touch of fresh memory is slow in these VMs)
    tunesmith_tps(tmp / "base", data, tmp / "warm", 3, False, False)
    trl_tps(tmp / "base", rows, tmp / "warm-trl", 3)
    t0 = time.perf_counter()
    results = {
        "trl_sft": trl_tps(tmp / "base", rows, tmp / "trl", args.steps),
        "tunesmith": tunesmith_tps(tmp / "base", data, tmp / "ts", args.steps, False, False),
        "tunesmith_packed": tunesmith_tps(tmp / "base", data, tmp / "tsp", args.steps, True, False),
        "tunesmith_bf16": tunesmith_tps(tmp / "base", data, tmp / "tsb", args.steps, False, True),
    }
    for name, tps in results.items():
        print(f"{name:18s} {tps:10.1f} tokens/s")
    base_tps = results["trl_sft"]
    print(f"tunesmith / TRL SFTTrainer        = {results['tunesmith'] / base_tps:.2f}x")
    print(f"tunesmith packed / TRL SFTTrainer = {results['tunesmith_packed'] / base_tps:.2f}x")
    print(f"packing on / off                  = {results['tunesmith_packed'] / results['tunesmith']:.2f}x")
    print(f"bf16 / fp32                       = {results['tunesmith_bf16'] / results['tunesmith']:.2f}x")
    print(f"(total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
