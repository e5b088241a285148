"""One flywheel iteration from a ``FlywheelConfig`` (``tunesmith flywheel run FLYWHEEL.yaml``).

mine the log (``<out>/mined/``) -> with a reviewed queue: build the next training set
(``<out>/data/``) -> train from the previous adapter or the base with the run config
(``<out>/run/``) -> evaluate on the run config's eval tasks and probes -> gate against the
serving model's evaluation (``<out>/gate/``) -> ``<out>/lineage.json`` linking requests ->
review items -> dataset -> run -> gate result. Without ``reviewed`` it stops after mining.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config.schema import DatasetSpec, FlywheelConfig
from tunesmith.flywheel import files
from tunesmith.flywheel.build import BuildOptions, BuildResult, build
from tunesmith.flywheel.mine import MineOptions, mine


@dataclass
class IterationResult:
    out: Path
    mined: dict[str, Any]  # mine.json
    built: BuildResult | None = None
    model_dir: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    gate_passed: bool | None = None
    lineage: Path | None = None


def run(config: FlywheelConfig, base_dir: Path = Path("."), *, overwrite: bool = False,
        say: Callable[[str], None] = print) -> IterationResult:
    """Run one iteration; relative paths in ``config`` are taken from ``base_dir``."""
    at = _resolver(base_dir)
    out = at(config.out)
    files.refuse_overwrite([out / "lineage.json"], overwrite, "a flywheel iteration")
    mined = _mine(config, at, out / "mined", overwrite)
    say(f"mined {mined['requests']} requests: {mined['flagged']} flagged, {len(mined['items'])} review items")
    result = IterationResult(out, mined)
    if config.reviewed is None:
        say(f"review {out / 'mined' / 'queue.jsonl'}, then set `reviewed:` and run again")
        return result
    run_config = _load_run_config(at(config.run_config))
    result.built = build(BuildOptions(
        reviewed=at(config.reviewed), out=out / "data", base_data=_specs(config.replay_data, at, run_config.datasets),
        eval_data=_specs(config.eval_data, at, _golden(run_config)), positives_share=config.positives_share,
        replay_ratio=config.replay_ratio, seed=config.seed, overwrite=overwrite,
        mix_temperature=run_config.mix_temperature if config.replay_data is None else 1.0))
    say("dataset: " + ", ".join(f"{k} {v}" for k, v in result.built.counts.items()))
    train_config = _train_config(config, at, result.built.train_file, out)
    _train_evaluate_gate(config, at, train_config, result, overwrite, say)
    result.lineage = _lineage(config, at, result)
    return result


def _mine(config: FlywheelConfig, at: Callable[[str], Path], folder: Path, overwrite: bool) -> dict[str, Any]:
    """mine.json of this iteration: mined now, or the earlier mining, never mined over: its queue may hold a
    person's verdicts (the walk-through saves them in place), which ``overwrite`` (dataset, run, lineage) must
    not wipe. A new mining is a new iteration (``out``) or ``tunesmith flywheel mine --overwrite``."""
    if (folder / "mine.json").is_file():
        return json.loads((folder / "mine.json").read_text("utf-8"))
    mine(MineOptions(db=at(config.db), out=folder, since=config.since, overwrite=overwrite))
    return json.loads((folder / "mine.json").read_text("utf-8"))


def _resolver(base_dir: Path) -> Callable[[str], Path]:
    return lambda p: (Path(p) if Path(p).is_absolute() else base_dir / p).expanduser()


def _load_run_config(path: Path) -> Any:
    from tunesmith.config import load_config

    return load_config(path)


def _specs(paths: list[str] | None, at: Callable[[str], Path], default: list[DatasetSpec]) -> tuple[DatasetSpec, ...]:
    return tuple(DatasetSpec(path=str(at(p))) for p in paths) if paths is not None else tuple(default)


def _golden(run_config: Any) -> list[DatasetSpec]:
    tasks = [DatasetSpec(path=t.path) for t in run_config.dataset_tasks]
    return [*tasks, *run_config.eval_datasets, *run_config.test_datasets]


def _train_config(config: FlywheelConfig, at: Callable[[str], Path], train_file: Path, out: Path) -> Any:
    from tunesmith.config import load_config

    datasets = [{"path": str(train_file), "type": "chat"}]
    parts = train_file.parent / "parts"
    if config.replay_weight is not None:  # dataset mixing: the replay part's share set by its weight
        datasets = [{"path": str(parts / "new.jsonl"), "type": "chat", "weight": 1.0}]
        if (parts / "replay.jsonl").stat().st_size:
            datasets.append({"path": str(parts / "replay.jsonl"), "type": "chat", "weight": config.replay_weight})
    overrides = [f"datasets={json.dumps(datasets)}", f"output_dir={json.dumps(str(out / 'run'))}"]
    if config.previous_adapter:
        overrides.append(f"lora_model_dir={json.dumps(str(at(config.previous_adapter)))}")
        lr = _continue_lr(config, at)
        if lr is not None:
            overrides.append(f"learning_rate={json.dumps(lr)}")
    overrides += [f"{key}={json.dumps(value)}" for key, value in config.train.items()]
    return load_config(at(config.run_config), overrides)


def _continue_lr(config: FlywheelConfig, at: Callable[[str], Path]) -> float | None:
    """Training on from the serving adapter: its run's learning rate x ``continue_lr_scale`` (unless
    ``train.learning_rate`` is set). That run reached its minimum at its own rate; at that rate again a
    few hundred new rows undo what it learned (the quickstart model: golden planning JSON validity
    100 % -> 17 % at 5e-3, ~50 % at 1e-3, ~80 % at 2e-4; BENCHMARKS.md)."""
    if "learning_rate" in config.train:
        return None
    adapter = at(config.previous_adapter or "")
    for run_json in (adapter / "run.json", adapter.parent / "run.json"):
        if run_json.is_file():
            resolved = json.loads(run_json.read_text("utf-8")).get("resolved") or {}
            if resolved.get("learning_rate"):
                return float(resolved["learning_rate"]) * config.continue_lr_scale
    run_config = _load_run_config(at(config.run_config))
    return run_config.learning_rate * config.continue_lr_scale if run_config.learning_rate else None


def _train_evaluate_gate(config: FlywheelConfig, at: Callable[[str], Path], train_config: Any,
                         result: IterationResult, overwrite: bool, say: Callable[[str], None]) -> None:
    from tunesmith import evaluate, gate, train

    trained = train.run(train_config, overwrite=overwrite, quiet=True, say=say)
    result.model_dir = trained.model_dir
    say(f"trained: {trained.global_step} steps, loss {trained.train_loss}")
    evaluated = evaluate.run(train_config, trained.model_dir, name="candidate")
    result.metrics = evaluated.main_metrics()
    say("candidate: " + ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items()))
    gated = gate.run(evaluated.files[0], at(config.baseline), config.gate, out_dir=result.out / "gate")
    result.gate_passed = gated.passed
    say(f"gate: {'PASSED' if gated.passed else 'FAILED'} ({result.out / 'gate' / 'gate.md'})")


def _lineage(config: FlywheelConfig, at: Callable[[str], Path], result: IterationResult) -> Path:
    built = result.built
    assert built is not None and result.model_dir is not None
    used = [json.loads(line) for line in built.train_file.read_text("utf-8").splitlines()]
    items = [r["meta"] for r in used if r["meta"]["origin"] in ("flywheel:correction", "flywheel:accepted")]
    run_dir = result.model_dir.parent
    record = {
        "created": time.time(),
        "requests": {"db": str(at(config.db).resolve()), "db_sha256": files.sha256(at(config.db)),
                     "mined": result.mined["requests"], "flagged": result.mined["flagged"]},
        "review_items": [{"id": m["item"], "origin": m["origin"], "request_ids": m["request_ids"]} for m in items],
        "positives": [r["meta"].get("request_id") for r in used if r["meta"]["origin"] == "flywheel:positive"],
        "dataset": {"path": str(built.train_file), "sha256": files.sha256(built.train_file),
                    "manifest": str(built.out / "manifest.json"), "counts": built.counts},
        "run": {"dir": str(run_dir), "model": str(result.model_dir),
                "from": str(at(config.previous_adapter)) if config.previous_adapter else "base_model",
                "run_json_sha256": files.sha256(run_dir / "run.json")},
        "evaluation": {"metrics": result.metrics, "file": str(run_dir / "eval" / "eval_candidate.json")},
        "gate": {"passed": result.gate_passed, "baseline": str(at(config.baseline)),
                 "file": str(result.out / "gate" / "gate.json")},
    }
    files.write_json(result.out / "lineage.json", record)
    return result.out / "lineage.json"
