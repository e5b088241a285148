"""The Runs pages' data: run directories under a root, their progress, curves and comparisons.

A run directory is any folder holding ``run.json`` (``tunesmith.train.rundir``); its curves come
from ``metrics.jsonl`` (one record per logged step), its gate verdict from ``eval/gate.json``.
Runs are named by their path relative to the root; a name that leaves the root is refused.

A file that cannot be read (a torn ``run.json``, a hand-edited ``config.yaml`` with a YAML error,
a ``metrics.jsonl`` line that is not an object) raises :class:`RunFileError` naming the file (and
line); the table leaves such runs out, the pages answer an error page. A torn last line of
``metrics.jsonl`` (a kill mid-write) is skipped, as train's own reader does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunesmith.errors import TunesmithError
from tunesmith.train.resume import recorded_process_alive

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
        return status_of(self.record)

    def cell(self, key: str) -> Any:
        return self.status if key == "status" else self.record.get(key)


class RunFileError(TunesmithError):
    """A file of a run directory that cannot be read (the message names it)."""


def read_text(path: Path) -> str:
    """A file the dashboard shows (a run's, an evaluation's); an error names it."""
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFileError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None


def parse_json(text: str, where: str) -> Any:
    """The JSON value of ``text``; an error names ``where`` (file or file:line)."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise RunFileError(f"{where}: not valid JSON ({getattr(exc, 'msg', exc)})") from None


def record_of(run_dir: Path) -> dict[str, Any]:
    """The run's ``run.json`` (a JSON object)."""
    path = run_dir / "run.json"
    record = parse_json(read_text(path), str(path))
    if not isinstance(record, dict):
        raise RunFileError(f"{path}: expected a JSON object (got {type(record).__name__})")
    return record


def find(root: Path) -> list[RunRow]:
    """Every run under ``root`` (sorted by name); runs whose run.json cannot be read are left out."""
    rows = []
    for p in sorted(root.rglob("run.json")) if root.is_dir() else []:
        try:
            record = record_of(p.parent)
        except RunFileError:
            continue
        rows.append(RunRow(p.parent.relative_to(root).as_posix() or ".", p.parent, record, gate_verdict(p.parent)))
    return rows


def find_one(root: Path, path: Path) -> RunRow:
    """The table row of one run directory."""
    return RunRow(path.relative_to(root.resolve()).as_posix() or ".", path, record_of(path), gate_verdict(path))


def resolve(root: Path, name: str) -> Path:
    """The run directory ``name`` (relative to ``root``); refuses names outside the root or without run.json."""
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()) or not (path / "run.json").is_file():
        raise TunesmithError(f"no run named {name!r} under {root}")
    return path


def status_of(record: dict[str, Any]) -> str:
    """The run's status: as recorded, except that a run recorded as starting/running whose last
    attempt ran on this host in a process that is gone (killed before it could record its end) is
    ``interrupted``: ``tunesmith.train.resume``'s rule for a live run (same host, pid alive)."""
    status = str(record.get("status") or "unknown")
    return "interrupted" if recorded_process_alive(record) is False else status


def _total_steps(run_dir: Path, record: dict[str, Any]) -> int | None:
    """The step target: the config's ``max_steps``, else (a run set in epochs, max_steps -1) the
    trainer's ``schedule.total_steps`` in run.json (recorded once training began)."""
    total = config_of(run_dir).get("max_steps")
    if not (isinstance(total, int) and total > 0):
        schedule = record.get("schedule")
        total = schedule.get("total_steps") if isinstance(schedule, dict) else None
    return total if isinstance(total, int) and not isinstance(total, bool) and total > 0 else None


def gate_verdict(run_dir: Path) -> bool | None:
    gate = run_dir / "eval" / "gate.json"
    try:
        return bool(json.loads(gate.read_text("utf-8"))["passed"]) if gate.is_file() else None
    except (OSError, ValueError, KeyError, TypeError):  # torn, not an object, no verdict
        return None


def config_of(run_dir: Path) -> dict[str, Any]:
    """The run's resolved config (``config.yaml``) as a dict ({} when missing)."""
    p = run_dir / "config.yaml"
    if not p.is_file():
        return {}
    try:
        config = yaml.safe_load(read_text(p))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        raise RunFileError(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(config, (dict, type(None))):
        raise RunFileError(f"{p}: expected a mapping of config keys (got {type(config).__name__})")
    return config or {}


def config_text(run_dir: Path) -> str:
    p = run_dir / "config.yaml"
    return read_text(p) if p.is_file() else "(no config.yaml)"


def metrics_of(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` ([] when missing); a line that is not JSON (torn by a kill) is skipped."""
    p = run_dir / "metrics.jsonl"
    if not p.is_file():
        return []
    out = []
    for number, line in enumerate(read_text(p).splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            raise RunFileError(f"{p}:{number}: expected a JSON object (got {type(record).__name__})")
        out.append(record)
    return out


def _whole(value: Any, where: str) -> int:
    """``value`` as a step count (None: 0)."""
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):
        raise RunFileError(f"{where}: must be a whole number (got {value!r})") from None


def curves(run_dir: Path, records: list[dict[str, Any]] | None = None) -> dict[str, list[tuple[float, float]]]:
    """``{train loss: [(step, loss)...], eval loss: [...]}`` from metrics.jsonl; series without points are left out."""
    records = metrics_of(run_dir) if records is None else records
    out: dict[str, list[tuple[float, float]]] = {}
    for key, label in CURVES.items():
        points = [(float(r["step"]), float(r[key])) for r in records
                  if isinstance(r.get(key), (int, float)) and isinstance(r.get("step"), (int, float))]
        if points:
            out[label] = points
    return out


def progress(run_dir: Path) -> dict[str, Any]:
    """What a live page shows: status, the last logged step and loss, the step target, a fraction."""
    record, metrics = record_of(run_dir), metrics_of(run_dir)
    steps = [_whole(r.get("step"), f"{run_dir / 'metrics.jsonl'}: step") for r in metrics]
    step = max(steps + [_whole(record.get("global_step"), f"{run_dir / 'run.json'}: global_step")])
    losses = [r["loss"] for r in metrics if isinstance(r.get("loss"), (int, float))]
    total, status = _total_steps(run_dir, record), status_of(record)
    fraction = 1.0 if status == "completed" else (min(step / total, 1.0) if total else None)
    return {"status": status, "step": step, "max_steps": total, "fraction": fraction,
            "loss": losses[-1] if losses else None, "points": sum(len(v) for v in curves(run_dir, metrics).values())}


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
    return [(k, status_of(a), status_of(b)) if k == "status" else (k, a.get(k), b.get(k)) for k in SUMMARY_KEYS]
