"""What the quickstart measured: the JSON summary, the report's content, and the targets."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from tunesmith import __version__
from tunesmith.config import Config
from tunesmith.quickstart import report
from tunesmith.quickstart.base import Base, recipe

LOWER_IS_BETTER = {"false_abstention_rate"}
TARGETS = {"json_valid_tuned": 0.9, "json_valid_base_max": 0.1, "macro_f1_tuned": 0.8, "total_seconds_max": 300}


def _metrics(evals: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for task, result in evals["tuned"].tasks.items():
        base = evals["base"].tasks[task].score
        tuned = result.score
        out[task] = {"main": tuned.main, "n": tuned.n,
                     "metrics": {k: {"base": base.metrics.get(k), "tuned": v} for k, v in tuned.metrics.items()}}
    return out


def targets(metrics: dict[str, Any], total: float) -> dict[str, Any]:
    json_valid = metrics["planning"]["metrics"]["json_valid"]
    f1 = metrics["tickets"]["metrics"]["macro_f1"]
    return {
        "json_valid_tuned >= 0.9": json_valid["tuned"] >= TARGETS["json_valid_tuned"],
        "json_valid_base <= 0.1": json_valid["base"] <= TARGETS["json_valid_base_max"],
        "macro_f1_tuned >= 0.8": f1["tuned"] >= TARGETS["macro_f1_tuned"],
        "total_seconds <= 300": total <= TARGETS["total_seconds_max"],
    }


def collect(options: Any, base: Base, config: Config, trained: Any, evals: dict[str, Any], merged: Any,
            stages: list[tuple[str, float]]) -> dict[str, Any]:
    """The run's facts and numbers (``quickstart.json``)."""
    run = json.loads((Path(config.output_dir) / "run.json").read_text("utf-8"))
    tok = run["tokenization"]
    seconds = float(run.get("train_runtime_s") or 0.0)
    seen = tok["tokens"] * float(config.num_epochs or 1)
    metrics = _metrics(evals)
    mains = [entry["metrics"][entry["main"]] for entry in metrics.values()]
    total = sum(s for _, s in stages)
    return {
        "profile": options.profile, "out_dir": str(options.out_dir), "tunesmith": __version__,
        "machine": f"{platform.machine()}, {_cores()} CPU cores",
        "base": {"path": str(base.path), "built_now": base.built_now, **base.card},
        "finetune": {"method": f"{config.method} + {config.adapter}", "steps": trained.global_step,
                     "trainable_params": trained.trainable_params, "total_params": trained.total_params,
                     "train_loss": trained.train_loss, "best_eval_loss": trained.best_eval_loss,
                     "rows": tok["rows"], "tokens_per_epoch": tok["tokens"], "epochs": config.num_epochs,
                     "train_seconds": seconds, "tokens_per_second": seen / seconds if seconds else None,
                     "data_fingerprint": run["data_fingerprint"]},
        "metrics": metrics,
        # every task's headline metric at least as good, and at least one better
        "improved": all(m["tuned"] >= m["base"] for m in mains) and any(m["tuned"] > m["base"] for m in mains),
        "merge": {"passed": merged.passed, "max_abs_diff": merged.max_abs_diff, "tolerance": merged.tolerance,
                  "prompts": merged.prompts, "path": str(merged.output_dir)},
        "stages": [list(s) for s in stages],
        "total_seconds": round(total, 1),
        "targets": targets(metrics, total),
    }


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _curves(config: Config, base: Path) -> dict[str, dict[str, list[tuple[float, float]]]]:
    def read(path: Path) -> list[dict[str, Any]]:
        return [json.loads(line) for line in path.read_text("utf-8").splitlines()] if path.is_file() else []

    sft = read(Path(config.output_dir) / "metrics.jsonl")
    pre = read(base / "pretraining_metrics.jsonl")
    return {
        "Fine-tuning loss (LoRA SFT)": {
            "train": [(r["step"], r["loss"]) for r in sft if "loss" in r and "step" in r],
            "eval": [(r["step"], r["eval_loss"]) for r in sft if "eval_loss" in r and "step" in r],
        },
        "Base pretraining loss (cpt)": {"train": [(r["step"], r["loss"]) for r in pre if "loss" in r and "step" in r]},
    }


def _facts(facts: dict[str, Any]) -> list[tuple[str, str]]:
    b, f = facts["base"], facts["finetune"]
    tps = f"{f['tokens_per_second']:,.0f}" if f["tokens_per_second"] else "n/a"
    return [
        ("base model", f"{b['architecture']}, {b['parameters']:,} parameters, {b['num_hidden_layers']} layers, "
                       f"hidden {b['hidden_size']}, vocab {b['vocab_size']:,}"),
        ("base pretraining", f"{b['tokens']:,} tokens of {b['documents']:,} project-written documents, "
                             f"{b['steps']} steps, {b['build_seconds']} s ({'built now' if b['built_now'] else 'cached'})"),
        ("fine-tune", f"{f['method']}, {f['trainable_params']:,} trainable parameters, {f['rows']:,} rows x "
                      f"{f['epochs']:g} epochs, {f['steps']} steps"),
        ("fine-tune time", f"{f['train_seconds']:.1f} s, {tps} tokens/s"),
        ("data fingerprint", f["data_fingerprint"]),
        ("total time", f"{facts['total_seconds']} s"),
        ("machine", facts["machine"]),
        ("tunesmith", facts["tunesmith"]),
    ]


def report_data(facts: dict[str, Any], evals: dict[str, Any], config: Config) -> report.ReportData:
    """The report page's content."""
    rows, confusions, examples = [], [], []
    per_task = recipe()["evaluate"]["examples_per_task"]
    for task, entry in facts["metrics"].items():
        main = entry["main"]
        for name in [main] + [k for k in entry["metrics"] if k != main]:
            value = entry["metrics"][name]
            rows.append(report.MetricRow(task, name, value["base"], value["tuned"], name == main,
                                         name not in LOWER_IS_BETTER))
        base, tuned = evals["base"].tasks[task], evals["tuned"].tasks[task]
        if tuned.score.confusion and base.score.confusion:
            c = tuned.score.confusion
            confusions.append(report.ConfusionView(task, c.labels, c.columns, base.score.confusion.matrix, c.matrix))
        for i in range(min(per_task, len(tuned.prompts))):
            examples.append(report.Example(task, tuned.prompts[i], tuned.golds[i], base.outputs[i], tuned.outputs[i],
                                           base.score.rows[i].correct, tuned.score.rows[i].correct))
    planning = facts["metrics"]["planning"]["metrics"]["json_valid"]
    headline = (f"Fine-tuning took JSON validity from {planning['base']:.0%} to {planning['tuned']:.0%} and ticket "
                f"macro-F1 from {facts['metrics']['tickets']['metrics']['macro_f1']['base']:.0%} to "
                f"{facts['metrics']['tickets']['metrics']['macro_f1']['tuned']:.0%} on held-out test rows.")
    return report.ReportData(
        title="tunesmith quickstart", summary=headline, facts=_facts(facts),
        curves=_curves(config, Path(facts["base"]["path"])), metrics=rows, confusions=confusions,
        examples=examples, merge=facts["merge"], stages=[(n, s) for n, s in facts["stages"]],
        notes=_notes(config),
    )


def _notes(config: Config) -> list[str]:
    planning = next(t for t in config.eval_tasks if t.scorer == "json")
    tolerance = ", ".join(f"{k} ±{v:g}" for k, v in planning.tolerance.items())
    return [
        "Test rows are held out from fine-tuning and from the base model's pretraining corpus.",
        "Both models get exactly the training chat template and system prompt; decoding is greedy.",
        "json_valid: the reply parses as a JSON object; schema_compliance: it also satisfies the schema; "
        f"field_*: that field equals the truth (numbers within {tolerance}); all_fields: every field right.",
        "macro_f1: mean F1 over the labels; a reply that is not exactly one label counts as wrong.",
        "abstention_accuracy: unanswerable questions answered 'Not found in context'; "
        "false_abstention_rate: answerable questions wrongly declined (lower is better).",
    ]
