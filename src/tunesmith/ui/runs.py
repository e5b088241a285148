"""The Runs pages' data: run directories under a root, their progress, curves and comparisons.

A run directory is any folder holding ``run.json`` (``tunesmith.train.rundir``); its curves come
from ``metrics.jsonl`` (one record per logged step), its gate verdict from ``eval/gate.json``.
Runs are named by their path relative to the root; a name that leaves the root is refused.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunesmith.errors import TunesmithError
from tunesmith.train.metrics import read as read_metrics

CURVES = {"loss": "train loss", "eval_loss": "eval loss"}


@dataclass
class RunRow:
    """One line of the runs table."""

    name: str
    path: Path
    record: dict[str, Any]
    gate: bool | None

    @property
    def status(self) -> str:
        return str(self.record.get("status") or "unknown")

    def cell(self, key: str) -> Any:
        return self.record.get(key)


def find(root: Path) -> list[RunRow]:
    """Every run under ``root`` (sorted by name); unreadable run.json files are left out."""
    rows = []
    for p in sorted(root.rglob("run.json")) if root.is_dir() else []:
        try:
            record = json.loads(p.read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        rows.append(RunRow(p.parent.relative_to(root).as_posix() or ".", p.parent, record, gate_verdict(p.parent)))
    return rows


def find_one(root: Path, path: Path) -> RunRow:
    """The table row of one run directory."""
    record = json.loads((path / "run.json").read_text("utf-8"))
    return RunRow(path.relative_to(root.resolve()).as_posix() or ".", path, record, gate_verdict(path))


def resolve(root: Path, name: str) -> Path:
    """The run directory ``name`` (relative to ``root``); refuses names outside the root or without run.json."""
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()) or not (path / "run.json").is_file():
        raise TunesmithError(f"no run named {name!r} under {root}")
    return path


def pid_alive(pid: Any) -> bool:
    """Whether process ``pid`` exists on this host (one of another user counts; a pid that is not a
    number is taken as alive: nothing is concluded from it)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError, OverflowError):
        return True
    return True


def gate_verdict(run_dir: Path) -> bool | None:
    gate = run_dir / "eval" / "gate.json"
    try:
        return bool(json.loads(gate.read_text("utf-8"))["passed"]) if gate.is_file() else None
    except (OSError, json.JSONDecodeError, KeyError):
        return None


def config_of(run_dir: Path) -> dict[str, Any]:
    """The run's resolved config (``config.yaml``) as a dict ({} when missing)."""
    p = run_dir / "config.yaml"
    return (yaml.safe_load(p.read_text("utf-8")) or {}) if p.is_file() else {}


def config_text(run_dir: Path) -> str:
    p = run_dir / "config.yaml"
    return p.read_text("utf-8") if p.is_file() else "(no config.yaml)"


def curves(run_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """``{train loss: [(step, loss)...], eval loss: [...]}`` from metrics.jsonl; series without points are left out."""
    records = read_metrics(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").is_file() else []
    out: dict[str, list[tuple[float, float]]] = {}
    for key, label in CURVES.items():
        points = [(float(r["step"]), float(r[key])) for r in records
                  if isinstance(r.get(key), (int, float)) and isinstance(r.get("step"), (int, float))]
        if points:
            out[label] = points
    return out


def progress(run_dir: Path) -> dict[str, Any]:
    """What a live page shows: status, the last logged step and loss, the step target, a fraction."""
    record = json.loads((run_dir / "run.json").read_text("utf-8"))
    metrics = read_metrics(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").is_file() else []
    step = max([int(r.get("step") or 0) for r in metrics] + [int(record.get("global_step") or 0)])
    losses = [r["loss"] for r in metrics if isinstance(r.get("loss"), (int, float))]
    total = config_of(run_dir).get("max_steps")
    total = total if isinstance(total, int) and total > 0 else None
    done = record.get("status") == "completed"
    fraction = 1.0 if done else (min(step / total, 1.0) if total else None)
    return {"status": record.get("status"), "step": step, "max_steps": total, "fraction": fraction,
            "loss": losses[-1] if losses else None, "points": sum(len(v) for v in curves(run_dir).values())}


def config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, value in a, value in b)`` for every key whose values differ (nested dicts walked)."""
    out = []
    for key in sorted(set(a) | set(b), key=str):
        va, vb = a.get(key), b.get(key)
        name = f"{prefix}{key}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, name + ".")
        elif va != vb:
            out.append((name, va, vb))
    return out


SUMMARY_KEYS = ("method", "adapter", "status", "global_step", "train_loss", "best_eval_loss")


def side_by_side(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """The headline numbers of two run.json records, for the compare page."""
    return [(k, a.get(k), b.get(k)) for k in SUMMARY_KEYS]
