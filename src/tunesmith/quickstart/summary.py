"""What the quickstart measured: the JSON summary, the report's content, and the targets."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from tunesmith import __version__
from tunesmith.config import Config
from tunesmith.quickstart import report, workspace
from tunesmith.quickstart.base import Base, recipe

LOWER_IS_BETTER = {"false_abstention_rate"}
PARAPHRASE_SUFFIX = "_paraphrase"


def _metrics(evals: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for task, result in evals["tuned"].tasks.items():
        base = evals["base"].tasks[task].score
        tuned = result.score
        out[task] = {"main": tuned.main, "n": tuned.n,
                     "metrics": {k: {"base": base.metrics.get(k), "tuned": v} for k, v in tuned.metrics.items()},
                     "interval": {"base": _interval(base), "tuned": _interval(tuned)}}
    return out


def _interval(score: Any) -> list[float] | None:
    """The headline's 95 % interval ``[low, high]`` (``evaluate.interval``), None when it has none."""
    return None if score.interval is None else [score.interval.low, score.interval.high]


def _pair(interval: list[float] | None) -> tuple[float, float] | None:
    return None if not interval else (interval[0], interval[1])


def _metric(metrics: dict[str, Any], task: str, name: str, model: str) -> float:
    return float(metrics[task]["metrics"][name][model])


# target name in recipe.yaml -> (label with {v}, whether it holds for value v)
_TARGETS: dict[str, tuple[str, Any]] = {
    "json_valid_tuned_min": ("json_valid_tuned >= {v:g}", lambda m, t, v: _metric(m, "planning", "json_valid", "tuned") >= v),
    "json_valid_base_max": ("json_valid_base <= {v:g}", lambda m, t, v: _metric(m, "planning", "json_valid", "base") <= v),
    "macro_f1_tuned_min": ("macro_f1_tuned >= {v:g}", lambda m, t, v: _metric(m, "tickets", "macro_f1", "tuned") >= v),
    "macro_f1_paraphrase_tuned_min": ("macro_f1_paraphrase_tuned >= {v:g}",
                                      lambda m, t, v: _metric(m, "tickets_paraphrase", "macro_f1", "tuned") >= v),
    "total_seconds_max": ("total_seconds <= {v:g}", lambda m, t, v: t <= v),
}


def targets(profile: str, metrics: dict[str, Any], total: float, first_run: bool = False) -> dict[str, bool]:
    """``{target: met}`` for the profile's targets in ``recipe.yaml`` (a run that also converted or built
    its base is held to ``total_seconds_first_run_max`` when the recipe has one)."""
    spec = dict(recipe()["targets"].get(profile) or {})
    first = spec.pop("total_seconds_first_run_max", None)
    if first_run and first is not None:
        spec["total_seconds_max"] = first
    return {_TARGETS[name][0].format(v=value): bool(_TARGETS[name][1](metrics, total, value))
            for name, value in spec.items()}


def collect(out_dir: Path, profile: str, base: Base, config: Config, trained: Any, evals: dict[str, Any],
            merged: Any, stages: list[tuple[str, float]]) -> dict[str, Any]:
    """The run's facts and numbers (``quickstart.json``)."""
    run = json.loads((Path(config.output_dir) / "run.json").read_text("utf-8"))
    tok = run["tokenization"]
    seconds = float(run.get("train_runtime_s") or 0.0)
    seen = tok["tokens"] * float(config.num_epochs or 1)
    metrics = _metrics(evals)
    total = sum(s for _, s in stages)
    return {
        "profile": profile, "out_dir": str(out_dir), "tunesmith": __version__,
        "machine": f"{platform.machine()}, {_cores()} CPU cores",
        "base": {"path": str(base.path), "built_now": base.built_now, **base.card},
        "finetune": {"method": f"{config.method} + {config.adapter}", "steps": trained.global_step,
                     "trainable_params": trained.trainable_params, "total_params": trained.total_params,
                     "train_loss": trained.train_loss, "best_eval_loss": trained.best_eval_loss,
                     "rows": tok["rows"], "tokens_per_epoch": tok["tokens"], "epochs": config.num_epochs,
                     "train_seconds": seconds, "tokens_per_second": seen / seconds if seconds else None,
                     "lora_layers": config.peft_layers_to_transform, "data_fingerprint": run["data_fingerprint"],
                     "replay_rows": _lines(workspace.replay_file(out_dir))},
        "metrics": metrics,
        "improved": improved(metrics),
        "merge": {"passed": merged.passed, "max_abs_diff": merged.max_abs_diff, "tolerance": merged.tolerance,
                  "prompts": merged.prompts, "path": str(merged.output_dir)},
        "forgetting": forgetting(evals),
        "stages": [list(s) for s in stages],
        "total_seconds": round(total, 1),
        "targets": targets(profile, metrics, total, base.built_now),
    }


def improved(metrics: dict[str, Any]) -> bool:
    """Every task's headline metric at least as good as the base's, and at least one better."""
    mains = [entry["metrics"][entry["main"]] for entry in metrics.values()]
    return all(m["tuned"] >= m["base"] for m in mains) and any(m["tuned"] > m["base"] for m in mains)


def _lines(path: Path) -> int:
    """Rows in a JSONL file; 0 when it does not exist."""
    return len(path.read_text("utf-8").splitlines()) if path.is_file() else 0


def forgetting(evals: dict[str, Any]) -> dict[str, Any] | None:
    """The general-capability probe (``evaluate``'s bundled set) for base and fine-tuned: accuracy
    overall and per category, the drop, and whether it stays within ``max_forgetting_drop``."""
    base, tuned = evals["base"].probes, evals["tuned"].probes
    if base is None or tuned is None:
        return None
    limit = float(recipe()["evaluate"]["max_forgetting_drop"])
    drop = base.accuracy - tuned.accuracy
    categories = {name: {"base": base.categories[name]["accuracy"], "tuned": tuned.categories.get(name, {}).get("accuracy")}
                  for name in base.categories}
    return {"n": len(base.rows), "base": base.accuracy, "tuned": tuned.accuracy, "drop": drop, "max_drop": limit,
            "passed": drop <= limit + 1e-9, "categories": categories, "path": base.path}


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _curves(config: Config, base: Path) -> dict[str, dict[str, list[tuple[float, float]]]]:
    def read(path: Path) -> list[dict[str, Any]]:
        return [json.loads(line) for line in path.read_text("utf-8").splitlines()] if path.is_file() else []

    sft = read(Path(config.output_dir) / "metrics.jsonl")
    curves = {
        "Fine-tuning loss (LoRA SFT)": {
            "train": [(r["step"], r["loss"]) for r in sft if "loss" in r and "step" in r],
            "eval": [(r["step"], r["eval_loss"]) for r in sft if "eval_loss" in r and "step" in r],
        },
    }
    pre = read(base / "pretraining_metrics.jsonl")
    if pre:  # only a base tunesmith built has a pretraining curve
        curves["Base pretraining loss (cpt)"] = {"train": [(r["step"], r["loss"]) for r in pre if "loss" in r and "step" in r]}
    return curves


def _base_facts(b: dict[str, Any]) -> list[tuple[str, str]]:
    shape = (f"{b['architecture']}, {b['parameters']:,} parameters, {b['num_hidden_layers']} layers, "
             f"hidden {b['hidden_size']}, vocab {b['vocab_size']:,}")
    if b.get("kind") == "pretrained":
        quant = ", ".join(f"{k} x{v}" for k, v in b["quantization"].items())
        return [("base model", f"{b['name']}: {shape} ({b['licence']})"),
                ("base source", f"{b['source']} (GGUF: {quant}); converted in {b['conversion_seconds']} s "
                                f"({'now' if b['built_now'] else 'cached'}), max |logit diff| vs the GGUF "
                                f"{b['conversion_max_abs_diff']:.1e}")]
    return [("base model", shape),
            ("base pretraining", f"{b['tokens']:,} tokens of {b['documents']:,} project-written documents, "
                                 f"{b['steps']} steps, {b['build_seconds']} s ({'built now' if b['built_now'] else 'cached'})")]


def _facts(facts: dict[str, Any]) -> list[tuple[str, str]]:
    f = facts["finetune"]
    tps = f"{f['tokens_per_second']:,.0f}" if f["tokens_per_second"] else "n/a"
    layers = f", LoRA on layers {f['lora_layers'][0]}-{f['lora_layers'][-1]}" if f.get("lora_layers") else ""
    return [
        *_base_facts(facts["base"]),
        ("fine-tune", f"{f['method']}{layers}, {f['trainable_params']:,} trainable parameters, {f['rows']:,} rows x "
                      f"{f['epochs']:g} epochs, {f['steps']} steps"),
        *([("replay", f"{f['replay_rows']} rows: the base model's own replies to general requests "
                      "(data/train/general.jsonl), against forgetting")] if f.get("replay_rows") else []),
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
            spans = (entry.get("interval") or {}) if name == main else {}
            rows.append(report.MetricRow(task, name, value["base"], value["tuned"], name == main,
                                         name not in LOWER_IS_BETTER, _pair(spans.get("base")),
                                         _pair(spans.get("tuned"))))
        base, tuned = evals["base"].tasks[task], evals["tuned"].tasks[task]
        if tuned.score.confusion and base.score.confusion:
            c = tuned.score.confusion
            confusions.append(report.ConfusionView(task, c.labels, c.columns, base.score.confusion.matrix, c.matrix))
        for i in range(min(per_task, len(tuned.prompts))):
            examples.append(report.Example(task, tuned.prompts[i], tuned.golds[i], base.outputs[i], tuned.outputs[i],
                                           base.score.rows[i].correct, tuned.score.rows[i].correct))
    probe = facts.get("forgetting")
    if probe is not None:
        rows.append(report.MetricRow("forgetting probe", "accuracy", probe["base"], probe["tuned"], True, True))
        for name, value in probe["categories"].items():
            rows.append(report.MetricRow("forgetting probe", name, value["base"], value["tuned"], False, True))
    m = facts["metrics"]
    planning, f1, para = (m["planning"]["metrics"]["json_valid"], m["tickets"]["metrics"]["macro_f1"],
                          m["tickets_paraphrase"]["metrics"]["macro_f1"])
    headline = (f"Fine-tuning took JSON validity from {planning['base']:.0%} to {planning['tuned']:.0%} and ticket "
                f"macro-F1 from {f1['base']:.0%} to {f1['tuned']:.0%} on held-out test rows in unseen templates, "
                f"and from {para['base']:.0%} to {para['tuned']:.0%} on hand-written paraphrases.")
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
        "Test rows are written from templates and vocabulary no training row uses (new stations, request and "
        "ticket templates, fillers, machines and questions); <task>_paraphrase rows are a hand-written set in "
        "other words. Neither reaches fine-tuning (nor the pretraining corpus of a base tunesmith builds).",
        "Both models get exactly the training chat template and system prompt; decoding is greedy.",
        "json_valid: the reply parses as a JSON object; schema_compliance: it also satisfies the schema; "
        f"field_*: that field equals the truth (numbers within {tolerance}); all_fields: every field right.",
        "macro_f1: mean F1 over the labels; a reply that is not exactly one label counts as wrong.",
        "abstention_accuracy: unanswerable questions answered 'Not found in context'; "
        "false_abstention_rate: answerable questions wrongly declined (lower is better).",
    ]
