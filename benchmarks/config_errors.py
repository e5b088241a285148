"""How long `tunesmith train BAD.yaml` takes to report a config mistake, vs `tunesmith --help`.

Each mistake is a load-time one (YAML syntax, duplicate key, unknown key, enumerated value
checked against the installed transformers/TRL, wrong type, missing key): it must be reported
before torch or transformers are imported. Wall time of the whole process, median of N runs;
the baseline in the same run is `tunesmith --help` (the CLI's bare start-up).

    .venv/bin/python benchmarks/config_errors.py [--runs 5]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TUNESMITH = str(Path(sys.executable).parent / "tunesmith")
HEAD = "base_model: ./base\ndatasets:\n  - path: train.jsonl\n"
MISTAKES = {
    "lr_scheduler typo": HEAD + "lr_scheduler: cosin\n",
    "optimizer typo": HEAD + "optimizer: adamw_torh\n",
    "loss_type typo": HEAD + "method: dpo\nloss_type: sigmod\n",
    "YAML tab": HEAD + "lora_r: 8\n\tlora_alpha: 16\n",
    "duplicate key": HEAD + "learning_rate: 1.0e-4\nlearning_rate: 2.0e-4\n",
    "unknown key": HEAD + "learning_rat: 1.0e-4\n",
    "wrong type": HEAD + "micro_batch_size: two\n",
    "missing base_model": "datasets:\n  - path: train.jsonl\n",
}


def wall(args: list[str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """(wall seconds, CPU seconds, result) of one process; CPU time barely depends on the load of a
    shared machine, wall time does."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([TUNESMITH, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    folder = Path(tempfile.mkdtemp())
    wall(["--help"])  # warm the file cache
    helps = [wall(["--help"]) for _ in range(runs)]
    base, base_cpu = statistics.median(h[0] for h in helps), statistics.median(h[1] for h in helps)
    print(f"tunesmith --help (baseline): {base:.2f} s wall, {base_cpu:.2f} s CPU (median of {runs})")
    print("| mistake | exit | one line | wall s | CPU s | wall ratio vs --help |\n|---|---|---|---|---|---|")
    for name, text in MISTAKES.items():
        path = folder / "bad.yaml"
        path.write_text(text)
        results = [wall(["train", str(path)]) for _ in range(runs)]
        done = results[-1][2]
        lines = done.stderr.strip().splitlines()
        median, cpu = statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)
        print(f"| {name} | {done.returncode} | {len(lines) == 1} | {median:.2f} | {cpu:.2f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
