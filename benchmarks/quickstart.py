"""Time the full quickstart from scratch (fresh cache: the base is built too) and check its targets.

    .venv/bin/python benchmarks/quickstart.py [--fast] [--out DIR]

Prints each stage's seconds, the held-out metrics base vs fine-tuned, and whether each target of
the quickstart issue holds (total <= 300 s on 2 cores, JSON validity >= 90 % fine-tuned and
<= 10 % base, ticket macro-F1 >= 0.8). The numbers come from the run's own quickstart.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench-quickstart"))
    args = parser.parse_args()
    tunesmith = str(Path(sys.executable).parent / "tunesmith")
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        cmd = [tunesmith, "quickstart", "--out", str(args.out), "--cache-dir", cache] + (["--fast"] if args.fast else [])
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
    summary = json.loads((args.out / "quickstart.json").read_text())
    print(f"wall clock (process start to exit, base built from scratch): {wall:.0f} s")
    for name, seconds in summary["stages"]:
        print(f"  {name:16s} {seconds:7.1f} s")
    for task, entry in summary["metrics"].items():
        for metric, value in entry["metrics"].items():
            if not metric.startswith("field_"):
                print(f"  {task:9s} {metric:22s} base {100 * value['base']:5.1f}%  fine-tuned {100 * value['tuned']:5.1f}%")
    print(f"  merge check: max |logit diff| {summary['merge']['max_abs_diff']:.2e} ({'passed' if summary['merge']['passed'] else 'FAILED'})")
    for target, met in summary["targets"].items():
        print(f"  target {target}: {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
