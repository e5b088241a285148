"""Latency and throughput of `tunesmith serve` vs `transformers serve` on the same model, same run.

Both servers are started as subprocesses on 127.0.0.1 with the same model folder (default: the
quickstart's merged model) and get the same chat requests (the quickstart's held-out prompts,
with the trained system prompt sent explicitly so both see identical prompt tokens), greedy,
`max_tokens` fixed. At each concurrency level C, C clients send requests back to back; reported:
p50/p95 request latency and completion tokens/s (usage.completion_tokens summed / wall time).
A bare `infer.generate` call per prompt (batch of one, in-process, servers stopped) is the
latency floor at concurrency 1. Prints the table and the ratios; absolute numbers are only
meaningful within one run (the CPU is shared).

    .venv/bin/python benchmarks/serve_latency.py [--model outputs/qs] [--requests 32] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BIN = Path(sys.executable).parent


def prompts(model_dir: Path, system: str | None, limit: int = 64) -> list[list[dict]]:
    """User turns of the quickstart's test split (or a fixed set), with the system prompt first."""
    found = []
    for path in sorted((model_dir / "data" / "test").glob("*.jsonl")) if (model_dir / "data").is_dir() else []:
        for line in path.read_text("utf-8").splitlines():
            messages = json.loads(line).get("messages") or []
            users = [m for m in messages if m["role"] == "user"]
            if users:
                found.append(users[-1]["content"])
    found = found or [f"Plan a station for part {i}. Required output: {100 + i} parts/day." for i in range(limit)]
    head = [{"role": "system", "content": system}] if system else []
    return [head + [{"role": "user", "content": text}] for text in found[::max(1, len(found) // limit)][:limit]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as response:
        return json.loads(response.read())


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("server did not start")


def load(url: str, model: str, convs: list, concurrency: int, total: int, max_tokens: int) -> dict:
    latencies, tokens, lock, next_i = [], [0], threading.Lock(), [0]

    def client() -> None:
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= total:
                return
            start = time.perf_counter()
            reply = post(url + "/v1/chat/completions", {"model": model, "messages": convs[i % len(convs)],
                                                        "max_tokens": max_tokens, "temperature": 0})
            with lock:
                latencies.append(time.perf_counter() - start)
                tokens[0] += reply["usage"]["completion_tokens"]

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=20, method="inclusive")
    return {"p50": statistics.median(latencies), "p95": q[18], "tok_s": tokens[0] / wall, "requests": total}


def serve_and_measure(cmd: list[str], url: str, model: str, convs: list, args: argparse.Namespace) -> dict:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(url, proc)
        load(url, model, convs, 2, 4, args.max_tokens)  # warm-up
        return {c: load(url, model, convs, c, max(args.requests, 2 * c), args.max_tokens) for c in args.levels}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def bare_generate(model_dir: Path, convs: list, n: int, max_tokens: int) -> dict:
    from tunesmith import infer
    from tunesmith.data.records import Message

    loaded = infer.load(model_dir)
    infer.generate(loaded.model, loaded.tokenizer, [[Message(**m) for m in convs[0]]], eos_ids=loaded.eos_ids,
                   max_new_tokens=max_tokens)  # warm-up
    latencies = []
    for conv in (convs * n)[:n]:
        start = time.perf_counter()
        infer.generate(loaded.model, loaded.tokenizer, [[Message(**m) for m in conv]], eos_ids=loaded.eos_ids,
                       max_new_tokens=max_tokens, batch_size=1)
        latencies.append(time.perf_counter() - start)
    q = statistics.quantiles(latencies, n=20, method="inclusive")
    return {"p50": statistics.median(latencies), "p95": q[18]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("outputs/qs"))
    parser.add_argument("--requests", type=int, default=32, help="requests per concurrency level (at least 2*C)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--skip-transformers", action="store_true")
    args = parser.parse_args()
    from tunesmith import infer

    folder = infer.resolve_model_dir(args.model)
    convs = prompts(args.model, infer.info(folder).get("system_prompt"))
    print(f"model {folder} | {len(convs)} prompts | max_tokens {args.max_tokens} | {os.cpu_count()} CPUs | "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        results["tunesmith serve"] = serve_and_measure(
            [str(BIN / "tunesmith"), "serve", str(args.model), "--name", "m", "--port", str(port),
             "--db", f"{tmp}/log.sqlite", "--max-queue", "1024"], f"http://127.0.0.1:{port}", "m", convs, args)
    if not args.skip_transformers:
        port = free_port()
        results["transformers serve"] = serve_and_measure(
            [str(BIN / "transformers"), "serve", str(folder), "--host", "127.0.0.1", "--port", str(port),
             "--device", "cpu", "--dtype", "float32"], f"http://127.0.0.1:{port}", str(folder), convs, args)
    bare = bare_generate(folder, convs, args.requests, args.max_tokens)
    print("\n| server | C | p50 s | p95 s | tokens/s |\n|---|---|---|---|---|")
    for name, levels in results.items():
        for c, r in levels.items():
            print(f"| {name} | {c} | {r['p50']:.3f} | {r['p95']:.3f} | {r['tok_s']:.1f} |")
    print(f"| bare generate (batch 1) | 1 | {bare['p50']:.3f} | {bare['p95']:.3f} | |")
    ours = results["tunesmith serve"]
    if "transformers serve" in results:
        theirs = results["transformers serve"]
        for c in args.levels:
            print(f"throughput ratio at C={c}: {ours[c]['tok_s'] / theirs[c]['tok_s']:.2f}x")
    if 1 in ours:
        print(f"p95 at C=1 vs bare generate: {ours[1]['p95'] / bare['p95']:.3f}x "
              f"(p50 {ours[1]['p50'] / bare['p50']:.3f}x)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
