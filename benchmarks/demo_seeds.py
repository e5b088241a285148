"""How much the quickstart's figures depend on the training seed: retrain its recipe with other seeds.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/demo_seeds.py outputs/quickstart [--seeds 1 2 3 7]
        [--set KEY=VALUE ...] [--out DIR]

Takes a finished `tunesmith quickstart` folder and, for each seed, runs its own `quickstart.yaml`
through the real CLI: `tunesmith train --set seed=S --set output_dir=DIR/sS` (plus any `--set`
given here, to try a recipe change) and `tunesmith evaluate --json`. The data files are the
quickstart's, so only the training draw changes (initialisation of the adapter, the order of the
batches). The quickstart's own seed reproduces its run.

Prints one line per seed and, per headline figure, the median and range over the seeds and how many
seeds meet the recipe's target. The forgetting change is measured against the base's probe accuracy
recorded in the quickstart's `quickstart.json`. A recipe change is worth shipping only when it moves
the distribution, not one draw: one seed moves these figures by up to ±0.2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

# (label, task, metric, target key in quickstart.json's targets or None)
FIGURES = (
    ("planning JSON, test", "planning", "json_valid", "json_valid_tuned >="),
    ("planning JSON, paraphrases", "planning_paraphrase", "json_valid", None),
    ("tickets macro-F1, test", "tickets", "macro_f1", "macro_f1_tuned >="),
    ("tickets macro-F1, paraphrases", "tickets_paraphrase", "macro_f1", "macro_f1_paraphrase_tuned >="),
    ("QA accuracy, test", "qa", "accuracy", None),
    ("QA accuracy, paraphrases", "qa_paraphrase", "accuracy", None),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("quickstart", type=Path, help="a finished `tunesmith quickstart --out` folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 7])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE for every run")
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default: QUICKSTART/seeds)")
    args = parser.parse_args()
    summary = json.loads((args.quickstart / "quickstart.json").read_text())
    out = args.out or args.quickstart / "seeds"
    rows = {seed: run_seed(args.quickstart / "quickstart.yaml", out / f"s{seed}", seed, args.overrides)
            for seed in args.seeds}
    report(rows, summary)


def run_seed(config: Path, out: Path, seed: int, overrides: list[str]) -> dict[str, Any]:
    """Train and evaluate one seed through the CLI; the evaluation's JSON."""
    tunesmith = str(Path(sys.executable).parent / "tunesmith")
    sets = [f"seed={seed}", f"output_dir={out}", *overrides]
    train = [tunesmith, "train", str(config), "-q", "--overwrite", *[a for s in sets for a in ("--set", s)]]
    subprocess.run(train, check=True, stdout=subprocess.DEVNULL)
    evaluate = [tunesmith, "evaluate", str(config), "--json", "--set", f"output_dir={out}"]
    result = json.loads(subprocess.run(evaluate, check=True, capture_output=True, text=True).stdout)
    print(f"seed {seed}: done ({out})", flush=True)
    return result


def report(rows: dict[int, dict[str, Any]], summary: dict[str, Any]) -> None:
    """One line per seed, then each figure's median, range and how many seeds meet its target."""
    base_probe = summary["forgetting"]["base"]
    max_drop = summary["forgetting"]["max_drop"]
    thresholds = {key.split(" >= ")[0] + " >=": float(key.split(" >= ")[1]) for key in summary["targets"] if " >= " in key}
    values: dict[str, list[float]] = {label: [] for label, *_ in FIGURES}
    values["forgetting (points)"] = []
    print("per seed: " + " | ".join(label for label, *_ in FIGURES) + " | forgetting")
    for seed, result in rows.items():
        cells = []
        for label, task, metric, _ in FIGURES:
            values[label].append(result["model"][task][metric])
            cells.append(f"{result['model'][task][metric]:.3f}")
        change = result["probes"]["model"]["accuracy"] - base_probe
        values["forgetting (points)"].append(100 * change)
        print(f"seed {seed}: " + " | ".join(cells) + f" | forgetting {100 * change:+.1f}")
    print(f"\nover {len(rows)} seeds (median, min-max, seeds meeting the target):")
    for label, task, metric, target in FIGURES:
        limit = thresholds.get(target) if target else None
        print(_line(label, values[label], limit))
    drops = values["forgetting (points)"]
    within = sum(d >= -100 * max_drop for d in drops)
    print(f"  {'forgetting (points)':32s} median {statistics.median(drops):+6.1f}  range {min(drops):+.1f} to "
          f"{max(drops):+.1f}  within the {100 * max_drop:.0f}-point limit: {within}/{len(drops)}")


def _line(label: str, xs: list[float], limit: float | None) -> str:
    met = f"  >= {limit}: {sum(x >= limit for x in xs)}/{len(xs)}" if limit is not None else ""
    return f"  {label:32s} median {statistics.median(xs):6.3f}  range {min(xs):.3f}-{max(xs):.3f}{met}"


if __name__ == "__main__":
    main()
