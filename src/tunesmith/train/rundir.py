"""The run directory: resolved config, run.json (versions, git, fingerprints, status), metrics."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from tunesmith.config import Config
from tunesmith.config.loader import dump_yaml
from tunesmith.errors import TunesmithError

LIBRARIES = ("tunesmith", "torch", "transformers", "peft", "trl", "datasets", "accelerate", "tokenizers")


class RunDirError(TunesmithError):
    """The output directory is not usable for this run."""


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


@dataclass
class RunDir:
    """An output directory owned by one run."""

    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    def prepare(self, config: Config, resume: bool, overwrite: bool) -> None:
        """Refuse to clobber another run; clear it with ``overwrite``."""
        self.path.mkdir(parents=True, exist_ok=True)
        existing = [p.name for p in self.path.iterdir() if p.name != ".cache"]
        if existing and not resume:
            if not overwrite:
                raise RunDirError(
                    f"{self.path}: output_dir is not empty ({', '.join(sorted(existing)[:5])}); "
                    "use --resume to continue that run or --overwrite to replace it"
                )
            for name in existing:
                _remove(self.path / name)
        (self.path / "config.yaml").write_text(dump_yaml(config), encoding="utf-8")

    def read_run(self) -> dict[str, Any]:
        p = self.path / "run.json"
        return json.loads(p.read_text("utf-8")) if p.is_file() else {}

    def update_run(self, **fields: Any) -> dict[str, Any]:
        run = self.read_run()
        run.update(fields)
        write_json_atomic(self.path / "run.json", run)
        return run


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def start_record(config: Config, data_fp: str, tok_fp: str, stats: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": "running",
        "method": config.method,
        "adapter": config.adapter,
        "base_model": config.base_model,
        "versions": versions(),
        "git_commit": git_commit(),
        "data_fingerprint": data_fp,
        "tokenizer_fingerprint": tok_fp,
        "tokenization": stats,
        "resolved": defaults,
        "start_time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
