"""Does ``torch.compile`` (inductor, CPU) pay on the 24M LoRA step? Same batches, one process.

The benchmark job of ``train_throughput.py`` (``llama24m``, the alpaca demo as chat, LoRA r 16 /
alpha 32 on all linear layers, sequence length 512, micro batch 4, padding-free rows, the fused
loss, AdamW) built through tunesmith's own data / tokenize / collate path; then N optimizer steps
on the same batches, first plain (eager), then with the decoder's forward compiled
(``torch.compile(dynamic=True)``: padding-free rows change length every step). Each variant starts
from the same weights and seed. Prints every step's time, the compile (first-step) overhead, the
steady-state ratio and the largest loss difference (``lora_dropout`` 0 here so the two paths draw no
random numbers and must agree).

    .venv/bin/python benchmarks/train_compile.py [--steps 12] [--mode default|max-autotune-no-cudagraphs]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_assets as assets  # noqa: E402


def batches(model_dir: Path, data: Path, steps: int, batch: int) -> list[dict]:
    from tunesmith import data as data_stage
    from tunesmith import tokenize
    from tunesmith.config import config_from_dict
    from tunesmith.tokenize import Collator

    out = tempfile.mkdtemp(prefix="tunesmith-compile-")
    config = config_from_dict({"base_model": str(model_dir), "output_dir": out, "val_set_size": 0,
                               "datasets": [{"path": str(data), "type": "chat"}], "sequence_len": 512})
    tokenizer = tokenize.load_tokenizer(str(model_dir), config.chat_template)
    rows = tokenize.run(config, data_stage.run(config), tokenizer).train
    collate = Collator(tokenizer.pad_token_id, padding_free=True)
    return [collate([rows[k] for k in range(i * batch, (i + 1) * batch)]) for i in range(steps)]


def train(model_dir: Path, steps: list[dict], compiled: bool, mode: str) -> tuple[list[float], list[float]]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunesmith.train import lmloss, varlen

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    base.set_attn_implementation(varlen.register())
    model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))
    model.train()
    if compiled:
        decoder = model.get_decoder()
        decoder.forward = torch.compile(decoder.forward, dynamic=True, mode=mode)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    times, losses = [], []
    for inputs in steps:
        start = time.perf_counter()
        count = int((inputs["labels"][..., 1:] != -100).sum())
        loss = lmloss.fused_loss(model, inputs, count, 1024)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
        losses.append(float(loss))
    return times, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--mode", default="default")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "tunesmith-bench")
    args = parser.parse_args()
    model_dir = assets.llama24m(args.cache)
    steps = batches(model_dir, assets.sft_data(args.cache)["chat"], args.steps, args.batch)
    tokens = [int(b["input_ids"].numel()) for b in steps]
    print(f"{args.steps} steps, tokens per step {min(tokens)}-{max(tokens)} (every step a new length)", flush=True)
    result = {}
    for name, compiled in (("eager", False), ("compiled", True)):
        times, losses = train(model_dir, steps, compiled, args.mode)
        result[name] = (times, losses)
        print(f"{name:9s} first step {times[0]:7.2f} s, steps 2..N median {statistics.median(times[1:]):.3f} s, "
              f"total {sum(times):7.2f} s; per step: {' '.join(f'{t:.2f}' for t in times)}", flush=True)
    (te, le), (tc, lc) = result["eager"], result["compiled"]
    steady = statistics.median(te[1:]) / statistics.median(tc[1:])
    print(f"steady-state speed-up (eager / compiled, median of steps 2..N): {steady:.2f}x; "
          f"whole run incl. compile: {sum(te) / sum(tc):.2f}x; compile overhead {tc[0] - te[0]:.1f} s; "
          f"max |loss diff| {max(abs(a - b) for a, b in zip(le, lc)):.2e}")


if __name__ == "__main__":
    main()
