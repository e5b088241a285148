"""The multi-process engines on a real GPU machine: one prepared command, <= 10 minutes.

    HF_HUB_OFFLINE=1 timeout 590 .venv/bin/python benchmarks/gpu_distributed.py [--out DIR] [--steps 30]

Needs a CUDA build of torch in the environment (``make setup`` pins the CPU wheel, which sees no
GPU) and, for the ZeRO cases, ``pip install deepspeed``; without them those cases report "skipped".

Status: written for issue 20, NOT YET RUN (the session that wrote it had no GPU lent). Whoever
runs it pastes the printed Markdown table into BENCHMARKS.md ("Several devices").

On the tiny 2-layer test model (hidden 256, built locally in milliseconds; no download), the same
LoRA SFT run, bf16, through ``tunesmith train CONFIG --nproc N`` (torch.distributed.run):

| case | needs |
|---|---|
| 1 process, bf16 on CUDA (the reference) | 1 GPU |
| DDP x N | N >= 2 GPUs |
| FSDP2 x N (full_shard) | N >= 2 GPUs (N = 1: FSDP2 on one device, still the gather-on-save path) |
| DeepSpeed ZeRO-2 x N | deepspeed installed |
| DeepSpeed ZeRO-3 x N | deepspeed installed |
| DeepSpeed ZeRO-3 + CPU offload x 1 | deepspeed installed (the single-device save path) |

For each case it records exit status, wall time, tokens/s (metrics.jsonl, steps 2..N), the
loss at step 1 and the last step, and checks the saved ``model/``: every adapter tensor
non-empty with the reference's shape, and the logits of the reloaded model vs the 1-process
reference (max |diff|; the same global batch: N processes x micro batch 2 = 1 process x micro
batch 2 x N accumulation steps). Cases whose requirements are missing are reported as skipped
with the reason, never silently left out. Results: ``DIR/gpu_distributed.json`` and a Markdown
table on stdout. Each case has its own time limit so the whole script stays under 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
TUNESMITH = str(Path(sys.executable).parent / "tunesmith")
CHATML = (ROOT / "src/tunesmith/tokenize/templates/chatml.jinja").read_text()
CASE_LIMIT_S = 80


def build(work: Path) -> tuple[Path, Path]:
    from tiny import build_model, build_tokenizer

    base = work / "base"
    tok = build_tokenizer(base, CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>",
                          pad_token="<|endoftext|>")
    build_model(base, tok, hidden=256)
    data = work / "data.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"What is {i % 97} plus {i % 89}? Answer in one sentence."},
        {"role": "assistant", "content": f"The answer is {i % 97 + i % 89}."}]}) + "\n" for i in range(4000)))
    return base, data


def config(work: Path, base: Path, data: Path, name: str, steps: int, accumulate: int, dist: str) -> Path:
    path = work / f"{name}.yaml"
    path.write_text(
        f"base_model: {base}\ndatasets:\n  - path: {data}\noutput_dir: {work / name}\nsequence_len: 128\n"
        f"micro_batch_size: 2\ngradient_accumulation_steps: {accumulate}\nmax_steps: {steps}\nsave_steps: {steps}\n"
        "learning_rate: 0.002\nbf16: true\nseed: 3\nlora_dropout: 0.0\nlogging_steps: 1\naudit:\n  fail_on: never\n"
        + dist)
    return path


def cases(gpus: int) -> list[tuple[str, int, str, str | None]]:
    """(name, processes, distributed section, why skipped or None)."""
    n = max(gpus, 1)
    deepspeed = None if find_spec("deepspeed") else "deepspeed is not installed (pip install deepspeed)"
    many = None if gpus >= 2 else f"needs >= 2 GPUs (this machine: {gpus})"
    cuda = "distributed:\n  device: cuda\n"
    return [
        ("ddp", n, cuda + "  backend: ddp\n", many),
        ("fsdp2", n, cuda + "  backend: fsdp\n", None),
        ("zero2", n, cuda + "  backend: deepspeed\n  zero_stage: 2\n", deepspeed),
        ("zero3", n, cuda + "  backend: deepspeed\n  zero_stage: 3\n", deepspeed),
        ("zero3_offload_1gpu", 1, cuda + "  backend: deepspeed\n  zero_stage: 3\n  offload: all\n", deepspeed),
    ]


def measure(run_dir: Path) -> dict:
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    tps = [r["tokens_per_s"] for r in losses[1:] if "tokens_per_s" in r]
    return {"tokens_per_s": sum(tps) / len(tps) if tps else None, "loss_first": losses[0]["loss"],
            "loss_last": losses[-1]["loss"], "steps": len(losses)}


def check_model(folder: Path, reference: Path | None) -> dict:
    import torch
    from safetensors.torch import load_file

    from tunesmith.infer import load

    out: dict = {}
    weights = load_file(str(folder / "adapter_model.safetensors"))
    out["tensors"] = len(weights)
    out["empty_tensors"] = sorted(k for k, v in weights.items() if v.numel() == 0)
    if reference is not None:
        ref = load_file(str(reference / "adapter_model.safetensors"))
        out["shape_mismatch"] = sorted(k for k in ref if k not in weights or weights[k].shape != ref[k].shape)
        ids = torch.tensor([[5, 17, 42, 99, 3, 250, 7]])
        with torch.no_grad():
            a = load(folder).model(input_ids=ids).logits.float()
            b = load(reference).model(input_ids=ids).logits.float()
        out["max_logit_diff_vs_1_process"] = float((a - b).abs().max())
    return out


def run_case(cfg: Path, nproc: int | None) -> dict:
    cmd = [TUNESMITH, "train", str(cfg), "--quiet"] + (["--nproc", str(nproc)] if nproc else [])
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=CASE_LIMIT_S)
        code, tail = res.returncode, (res.stdout + res.stderr)[-1500:]
    except subprocess.TimeoutExpired as exc:
        code, tail = "timeout", str(exc.stderr or "")[-1500:]
    return {"exit": code, "wall_s": round(time.perf_counter() - t0, 1), "tail": tail}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "outputs/gpu_distributed"))
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    import torch

    gpus = torch.cuda.device_count()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    work.mkdir(exist_ok=True)
    base, data = build(work)
    results: dict = {"gpus": gpus, "device": torch.cuda.get_device_name(0) if gpus else "none",
                     "torch": torch.__version__, "deepspeed": find_spec("deepspeed") is not None, "cases": {}}
    if not gpus:
        print("no CUDA device: nothing to measure")
        results["skipped"] = "no CUDA device"
    else:
        ref_cfg = config(work, base, data, "reference", args.steps, max(gpus, 1), "")
        results["cases"]["reference_1gpu"] = ref = run_case(ref_cfg, None)
        if ref["exit"] == 0:
            ref.update(measure(work / "reference"), model=check_model(work / "reference" / "model", None))
        for name, nproc, dist, skip in cases(gpus):
            if skip:
                results["cases"][name] = {"skipped": skip}
                continue
            accumulate = max(gpus, 1) // nproc  # same global batch as the reference
            cfg = config(work, base, data, name, args.steps, accumulate, dist)
            res = results["cases"][name] = run_case(cfg, nproc)
            if res["exit"] == 0:
                res.update(measure(work / name), processes=nproc)
                res["model"] = check_model(work / name / "model", work / "reference" / "model"
                                           if ref["exit"] == 0 else None)
    (out / "gpu_distributed.json").write_text(json.dumps(results, indent=2))
    print(table(results))


def table(results: dict) -> str:
    lines = [f"GPUs: {results['gpus']} x {results['device']}, torch {results['torch']}, "
             f"deepspeed installed: {results['deepspeed']}", "",
             "| case | result | wall s | tokens/s | loss step 1 → last | max logit diff vs 1 process | empty tensors |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results["cases"].items():
        if "skipped" in r:
            lines.append(f"| {name} | skipped: {r['skipped']} | | | | | |")
            continue
        if r["exit"] != 0:
            lines.append(f"| {name} | FAILED ({r['exit']}): {r['tail'][-200:]!r} | {r['wall_s']} | | | | |")
            continue
        model = r.get("model", {})
        tps = f"{r['tokens_per_s']:,.0f}" if r.get("tokens_per_s") else "n/a"
        diff = model.get("max_logit_diff_vs_1_process")
        lines.append(f"| {name} | ok | {r['wall_s']} | {tps} | {r['loss_first']:.4f} → {r['loss_last']:.4f} | "
                     f"{'' if diff is None else f'{diff:.2e}'} | {len(model.get('empty_tensors', []))} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
