"""The run directory: resolved config, run.json (versions, git, fingerprints, status, one entry
per attempt), metrics, rejected rows, checkpoints and the atomically saved model."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from tunesmith.config import Config
from tunesmith.config.loader import dump_yaml
from tunesmith.models.fingerprint import base_fingerprint
from tunesmith.train.checkpoints import fsync_files
from tunesmith.train.guard import RunDirError, clear
from tunesmith.train.resume import Plan

__all__ = ["RunDir", "RunDirError", "base_fingerprint", "start_record", "write_json_atomic"]

LIBRARIES = ("tunesmith", "torch", "transformers", "peft", "trl", "datasets", "accelerate", "tokenizers")


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def versions() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "not installed"
    return out


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=cwd, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=cwd, timeout=5)
    return res.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _config_header() -> str:
    """config.yaml's first lines: where its relative paths (data, base model, output_dir) are from."""
    workdir = json.dumps(str(Path.cwd()), ensure_ascii=False)
    return (f"# The resolved config of this run's latest attempt. Its relative paths are from {workdir}\n"
            "# (run.json: attempts[].workdir); `tunesmith train` on this file from there reproduces the run.\n")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class RunDir:
    """An output directory owned by one run."""

    path: Path
    begun: bool = False  # this process has claimed the directory (begin) and records its attempt
    writer: bool = True  # False on ranks other than 0 of a multi-process run: they never write here

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def model(self) -> Path:
        return self.path / "model"

    def read_run(self) -> dict[str, Any]:
        p = self.path / "run.json"
        return json.loads(p.read_text("utf-8")) if p.is_file() else {}

    def update_run(self, **fields: Any) -> dict[str, Any]:
        if not self.writer:
            return {}
        run = self.read_run()
        run.update(fields)
        write_json_atomic(self.path / "run.json", run)
        return run

    def begin(self, config: Config, plan: Plan) -> None:
        """Claim the directory for this attempt: a fresh run clears the previous (tunesmith) run's
        files and writes config.yaml + run.json; a resume appends an attempt to run.json's history."""
        if not self.writer:
            return
        if plan.clear:
            clear(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._sweep()
        record = {} if plan.kind == "fresh" else self.read_run()
        attempts = list(record.get("attempts") or [])
        for earlier in attempts:
            if earlier.get("status") in ("starting", "running"):
                earlier["status"] = "interrupted"  # killed: it never recorded its own end
        attempts.append({
            "attempt": len(attempts) + 1, "kind": plan.kind, "start_time": _now(), "pid": os.getpid(),
            "host": socket.gethostname(), "from_step": plan.step, "config_changes": plan.changes,
            "versions": versions(), "git_commit": git_commit(), "workdir": str(Path.cwd()), "status": "running",
        })
        record.update(status="starting" if plan.kind == "fresh" else "running", attempts=attempts)
        for stale in ("end_time", "error"):
            record.pop(stale, None)
        if plan.kind == "fresh":
            record.update(method=config.method, adapter=config.adapter, base_model=config.base_model,
                          start_time=_now())
        (self.path / "config.yaml").write_text(_config_header() + dump_yaml(config), encoding="utf-8")
        write_json_atomic(self.path / "run.json", record)
        self.begun = True

    def end_attempt(self, status: str, **fields: Any) -> None:
        """Record the end of the current attempt (and the run's status) in run.json."""
        if not self.writer:
            return
        record = self.read_run()
        attempts = record.get("attempts") or [{}]
        attempts[-1].update(status=status, end_time=_now(),
                            **{k: v for k, v in fields.items() if k in ("global_step", "error", "train_loss")})
        record.update(status=status, end_time=_now(), attempts=attempts, **fields)
        write_json_atomic(self.path / "run.json", record)

    def write_rejected(self, data_rejected: list[Any], more: list[dict[str, Any]]) -> Path | None:
        """Every left-out row (data stage + tokenization) in rejected_rows.jsonl; None when none was."""
        from tunesmith.data.ingest import write_rejected

        if not self.writer:
            return None
        path = self.path / "rejected_rows.jsonl"
        if not data_rejected and not more:
            path.unlink(missing_ok=True)
            return None
        write_rejected(path, data_rejected, more)
        return path

    @contextlib.contextmanager
    def saving_model(self) -> Iterator[Path]:
        """A temporary folder to save the model into; it replaces ``model/`` only once complete."""
        tmp = self.path / f".model.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        yield tmp
        fsync_files(tmp)
        old = self.path / f".model.old-{os.getpid()}"
        if self.model.exists():
            os.replace(self.model, old)
        os.replace(tmp, self.model)
        shutil.rmtree(old, ignore_errors=True)

    def _sweep(self) -> None:
        """Remove temporary model folders a killed attempt left (``model/`` is only ever replaced whole)."""
        for stale in self.path.glob(".model.*"):
            if stale.name.startswith(".model.old-") and not self.model.exists():
                os.replace(stale, self.model)  # killed between the two renames: the old model is still whole
            else:
                shutil.rmtree(stale, ignore_errors=True)


def start_record(config: Config, facts: dict[str, Any], stats: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The run's identity and tokenization facts, recorded once the data is loaded."""
    return {
        "status": "running",
        "method": config.method,
        "adapter": config.adapter,
        "base_model": config.base_model,
        "versions": versions(),
        "git_commit": git_commit(),
        **facts,
        "tokenization": stats,
        "resolved": defaults,
    }
