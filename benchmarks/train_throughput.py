"""Real tokens/s of `tunesmith train` vs TRL's SFTTrainer and LLaMA-Factory on the same job.

Same model, data (the 999 alpaca demo rows as chat), reply-only loss, LoRA r 16 / alpha 32 /
dropout 0.05 on all linear layers (or full fine-tuning), sequence length 512, micro batch 4,
cosine schedule, 30 steps. Each tool runs in its own process (LLaMA-Factory in its own venv, see
bench_assets.py); repetitions are interleaved (the tool order rotates every repetition) so a
noisy machine hits every tool alike. The benchmark's own probe (peers/probe.py) counts real
(non-padding) tokens and times steps inside every tool; peak RSS comes from ``os.wait4``.

* tokens/s: real tokens of steps 2..N / wall time from the end of step 1 to the end of step N;
* time to first step: process launch to the end of step 1 (imports, data, audit, tokenization,
  model load and the first step);
* ratios are per repetition (each tool against TRL in the same repetition): median (min–max).

``--method dpo``: TRL's DPOTrainer script, LLaMA-Factory ``stage: dpo`` and tunesmith ``method: dpo``
on the dpo_en_demo pairs whose both sequences fit ``--seq`` (``bench_assets.dpo_fitting``), so no
tool drops or truncates a pair.

    .venv/bin/python benchmarks/train_throughput.py [--models llama24m smollm2] [--precisions fp32 bf16]
        [--adapters lora full] [--reps 3] [--steps 30] [--baseline-rev main] [--cache DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_assets as assets  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "benchmarks" / "peers"
DPO_RUNNERS = {"trl": "run_trl_dpo.py"}
RUNNERS = {"trl": "run_trl_sft.py", "llamafactory": "run_llamafactory.py", "tunesmith": "run_tunesmith.py",
           "tunesmith_base": "run_tunesmith.py"}
LABELS = {"trl": "TRL SFTTrainer script", "llamafactory": "LLaMA-Factory", "tunesmith": "tunesmith (this branch)",
          "tunesmith_base": "tunesmith (baseline rev)"}


def baseline_src(cache: Path, rev: str) -> Path:
    """``src/`` of ``rev`` exported from git into the cache (imported instead of the installed package)."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", rev], capture_output=True, text=True,
                         check=True).stdout.strip()
    out = cache / f"tunesmith-{sha[:10]}"
    if not (out / "src").exists():
        out.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, "src"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out / "src"


def run_one(tool: str, spec: dict, python: str, work: Path, timeout: int, threads: int | None = None) -> dict:
    """One training process; returns the probe's result plus peak RSS and exit status."""
    spec = {**spec, "out": str(work / "out"), "result": str(work / "result.json"), "probe_dir": str(PEERS)}
    (work / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "BENCH_LAUNCH": repr(time.time())}
    env.pop("PYTHONPATH", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with open(work / "log.txt", "w") as log:
        runner = DPO_RUNNERS.get(tool, RUNNERS[tool]) if spec.get("stage") == "dpo" else RUNNERS[tool]
        proc = subprocess.Popen([python, str(PEERS / runner), str(work / "spec.json")], stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd=work)
        deadline = time.time() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.time() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
    result = json.loads((work / "result.json").read_text()) if (work / "result.json").exists() else {}
    tail = (work / "log.txt").read_text(errors="replace")[-1500:]
    return {**result, "peak_rss_gb": usage.ru_maxrss / 1e6, "rc": os.waitstatus_to_exitcode(status),
            "log_tail": tail if not result else ""}


def summarise(rows: list[dict], tools: list[str]) -> list[dict]:
    """Per tool: median tokens/s, per-repetition ratio to TRL (median, min, max), first step, RSS."""
    out = []
    for tool in tools:
        mine = [r for r in rows if r["tool"] == tool and r.get("tokens_per_s")]
        if not mine:
            out.append({"tool": tool, "failed": True})
            continue
        ratios = []
        for r in mine:
            ref = [b for b in rows if b["tool"] == "trl" and b["rep"] == r["rep"] and b.get("tokens_per_s")]
            if ref:
                ratios.append(r["tokens_per_s"] / ref[0]["tokens_per_s"])
        out.append({
            "tool": tool, "tokens_per_s": statistics.median(r["tokens_per_s"] for r in mine),
            "ratio": statistics.median(ratios) if ratios else None, "ratio_min": min(ratios, default=None),
            "ratio_max": max(ratios, default=None),
            "first_step_s": statistics.median(r["first_step_s"] for r in mine),
            "peak_rss_gb": statistics.median(r["peak_rss_gb"] for r in mine),
            "tokens_per_step": statistics.median(r["steady_tokens"] / max(r["steps"] - 1, 1) for r in mine),
            "final_loss": statistics.median(r["losses"][-1] for r in mine if r.get("losses")) if any(
                r.get("losses") for r in mine) else None,
            "runs": len(mine),
        })
    return out


def table(title: str, summary: list[dict]) -> str:
    lines = [f"\n### {title}\n", "| tool | real tokens/s | ratio to TRL (min–max) | real tokens/step | time to first step | peak RSS |",
             "|---|---|---|---|---|---|"]
    for s in summary:
        if s.get("failed"):
            lines.append(f"| {LABELS[s['tool']]} | failed | | | | |")
            continue
        ratio = f"{s['ratio']:.2f} ({s['ratio_min']:.2f}–{s['ratio_max']:.2f})" if s["ratio"] else "–"
        lines.append(f"| {LABELS[s['tool']]} | {s['tokens_per_s']:,.0f} | {ratio} | {s['tokens_per_step']:,.0f} | "
                     f"{s['first_step_s']:.1f} s | {s['peak_rss_gb']:.2f} GB |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["llama24m"], choices=["llama24m", "smollm2"])
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--adapters", nargs="+", default=["lora"], choices=["lora", "full"])
    parser.add_argument("--tools", nargs="+", default=["trl", "llamafactory", "tunesmith"], choices=list(RUNNERS))
    parser.add_argument("--baseline-rev", help="also run tunesmith at this git revision (e.g. main)")
    parser.add_argument("--method", choices=["sft", "dpo"], default="sft",
                        help="dpo: TRL DPOTrainer script, LLaMA-Factory stage dpo, tunesmith method dpo on dpo_en_demo")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lf-no-gc", action="store_true",
                        help="turn off LLaMA-Factory's default gradient checkpointing (the others do not checkpoint)")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for every tool (default: torch's choice)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per training process")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "tunesmith-bench")
    parser.add_argument("--json", type=Path, help="write every run and the summary here")
    args = parser.parse_args()
    tools = list(dict.fromkeys([*args.tools, *(["tunesmith_base"] if args.baseline_rev else [])]))
    if args.method == "dpo":
        LABELS["trl"] = "TRL DPOTrainer script"
    if "trl" not in tools:
        parser.error("--tools must include trl (the ratios are to TRL)")
    args.cache.mkdir(parents=True, exist_ok=True)
    data = assets.sft_data(args.cache)
    pythons = {t: sys.executable for t in tools}
    if "llamafactory" in tools:
        pythons["llamafactory"] = str(assets.lf_venv(args.cache))
    base_src = str(baseline_src(args.cache, args.baseline_rev)) if args.baseline_rev else None
    models = {"llama24m": assets.llama24m, "smollm2": assets.smollm2}
    work = Path(tempfile.mkdtemp(prefix="tunesmith-throughput-"))
    rows: list[dict] = []
    combos = [(m, p, a) for m in args.models for p in args.precisions for a in args.adapters]
    t0 = time.time()
    for rep in range(args.reps):
        for model, precision, adapter in combos:
            model_dir = models[model](args.cache)
            if args.method == "dpo":  # the same whole pairs for every tool (none dropped, none truncated)
                data = assets.dpo_fitting(assets.sft_data(args.cache), model_dir, args.seq)
            spec = {"model": str(model_dir), "pad_id": assets.pad_id(model_dir), "data_chat": str(data["chat"]),
                    "data_prompt_completion": str(data["prompt_completion"]), "lf_dataset_dir": str(data["dir"]),
                    "data_preference": str(data["dpo"]), "stage": args.method,
                    "lf_dataset": "bench_dpo" if args.method == "dpo" else "bench_chat", "steps": args.steps,
                    "seq": args.seq, "batch": args.batch, "adapter": adapter, "bf16": precision == "bf16",
                    "lf_gradient_checkpointing": not args.lf_no_gc,
                    "lr": 5e-6 if args.method == "dpo" else 2e-4 if adapter == "lora" else 2e-5}
            order = tools[rep % len(tools):] + tools[:rep % len(tools)]
            for tool in order:
                folder = work / f"{model}-{precision}-{adapter}-{tool}-{rep}"
                folder.mkdir(parents=True)
                run_spec = {**spec, "src": base_src} if tool == "tunesmith_base" else spec
                res = run_one(tool, run_spec, pythons[tool], folder, args.timeout, args.threads)
                rows.append({"tool": tool, "rep": rep, "model": model, "precision": precision, "adapter": adapter, **res})
                print(f"[{time.time() - t0:6.0f}s] rep {rep} {model} {precision} {adapter} {tool:15s} "
                      f"tokens/s {res.get('tokens_per_s') or 0:8.1f}  first step {res.get('first_step_s') or 0:5.1f} s  "
                      f"rss {res['peak_rss_gb']:.2f} GB  rc {res['rc']}", flush=True)
                if res["log_tail"]:
                    print(res["log_tail"], flush=True)
    report = []
    for model, precision, adapter in combos:
        sub = [r for r in rows if (r["model"], r["precision"], r["adapter"]) == (model, precision, adapter)]
        summary = summarise(sub, tools)
        report.append({"model": model, "precision": precision, "adapter": adapter, "summary": summary})
        print(table(f"{args.method.upper()}: {model}, {precision}, {'LoRA r 16' if adapter == 'lora' else 'full fine-tuning'}, "
                    f"seq {args.seq}, micro batch {args.batch}, {args.steps} steps, {args.reps} interleaved reps",
                    summary))
    print(f"\n(total {time.time() - t0:.0f} s; machine: {os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.1f})")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"cache": str(args.cache), "json": str(args.json)},
                                         "runs": rows, "report": report}, indent=1, default=str))


if __name__ == "__main__":
    main()
