"""Decide what ``train`` does with an output directory, before any data is loaded.

| the directory holds | no flag | ``--resume`` | ``--overwrite`` |
|---|---|---|---|
| nothing (or only ``.cache``) | fresh run | fresh run | fresh run |
| files but no ``run.json`` | refused | refused | refused (tunesmith deletes only its own run directories) |
| an unfinished run with a complete checkpoint, same config | resume | resume | start over |
| ... with a different config | refused, naming each difference | resume when every difference is safe (``SAFE_ON_RESUME``), else refused | start over |
| an unfinished run without a complete checkpoint | start over | start over | start over |
| a completed run, same config and data files | nothing to do | nothing to do | start over |
| a completed run, same config, changed data files | refused | refused | start over |
| a completed run, more ``max_steps`` / ``num_epochs`` | refused | extend from the last checkpoint | start over |

After the data and tokenizer are loaded, a resume also compares the data, tokenizer and base
model fingerprints with the run's record (:func:`verify`) and refuses on any difference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunesmith.config import Config
from tunesmith.models.cache import pid_alive
from tunesmith.train import checkpoints as ckpt
from tunesmith.train.guard import RunDirError, check_inputs

EXTENDING = ("max_steps", "num_epochs")
"""Keys that make a run longer: allowed with --resume (and the reason to resume a completed run)."""
SAFE_ON_RESUME = (*EXTENDING, "save_steps", "save_total_limit", "logging_steps", "report_to", "eval_tasks",
                  "eval_batch_size", "test_datasets", "audit")
"""Keys whose change does not alter what the steps already trained mean."""
_IGNORED = ("output_dir",)
_OWN = (".cache",)


@dataclass
class Plan:
    """What this ``train`` call does: ``fresh``, ``resume``, ``extend`` or ``done`` (nothing)."""

    kind: str
    message: str = ""
    checkpoint: Path | None = None
    changes: dict[str, list[Any]] = field(default_factory=dict)
    clear: bool = False  # delete the previous attempt's files first (tunesmith run directories only)
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def step(self) -> int:
        return ckpt.step_of(self.checkpoint) if self.checkpoint is not None else 0


def decide(config: Config, path: Path, resume: bool, overwrite: bool, world_size: int = 1) -> Plan:
    """The plan for ``config`` in the run directory ``path`` (RunDirError when refused).

    ``world_size``: the processes of this attempt; a checkpoint written by another number of
    processes is refused (its RNG states and data order are per rank)."""
    record = _read_json(path / "run.json") if path.is_dir() and not overwrite else None
    if record is not None and (record.get("status") != "completed" or resume):
        done = ckpt.complete_checkpoints(path / "checkpoints")
        if done:  # checked before the config comparison: --nproc changes the config too
            _check_world(done[-1], world_size)
    return _decide(config, path, resume, overwrite)


def _check_world(checkpoint: Path, world_size: int) -> None:
    wrote = ckpt.world_size_of(checkpoint)
    if wrote != world_size:
        raise RunDirError(
            f"{checkpoint}: this checkpoint was written by {wrote} process(es), this attempt runs {world_size}: "
            "each rank's RNG state and its shard of the data order are in the checkpoint, so resuming with another "
            f"number of processes would not continue the same run; resume with --nproc {wrote} (x nodes), or "
            "--overwrite to start over at the new size")


def _decide(config: Config, path: Path, resume: bool, overwrite: bool) -> Plan:
    check_inputs(config)
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite contradict each other: pick one")
    entries = sorted(p.name for p in path.iterdir() if p.name not in _OWN) if path.is_dir() else []
    if not entries:
        return Plan("fresh", "no run in output_dir yet: nothing to resume, starting at step 0" if resume else "")
    record = _read_json(path / "run.json")
    if record is None:
        raise RunDirError(
            f"{path}: output_dir is not empty ({', '.join(entries[:5])}) and is not a tunesmith run directory (no "
            "run.json); tunesmith never deletes a folder it did not create: choose another output_dir or empty it"
        )
    _refuse_if_live(record, path)
    if overwrite:
        return Plan("fresh", f"--overwrite: replacing the run in {path}", clear=True)
    changes = diff(_recorded_config(path), config.model_dump(mode="json"))
    done = ckpt.complete_checkpoints(path / "checkpoints")
    if record.get("status") == "completed":
        return _completed(config, path, record, changes, done, resume)
    if not done:
        state = record.get("status", "unknown")
        return Plan("fresh", f"the previous attempt ({state}) left no complete checkpoint: starting over", clear=True)
    if changes and not (resume and set(changes) <= set(SAFE_ON_RESUME)):
        raise _changed(path, f"an unfinished run (last complete checkpoint: {done[-1].name})", changes, resume)
    _check_length(config, changes, ckpt.step_of(done[-1]))
    how = "" if resume else " (same config; --overwrite starts over)"
    return Plan("resume", f"resuming from {done[-1].name} (step {ckpt.step_of(done[-1])}){how}", done[-1], changes,
                record=record)


def _completed(config: Config, path: Path, record: dict[str, Any], changes: dict[str, list[Any]],
               done: list[Path], resume: bool) -> Plan:
    steps = record.get("global_step")
    changed = _inputs_changed(config, path, record) if not changes else []
    if changed:
        raise RunDirError(f"{path} holds a completed run ({steps} steps) of this config, but {' and '.join(changed)} "
                          "changed since: --overwrite to train on the new inputs, or choose another output_dir")
    if not changes:
        return Plan("done", f"{path} already holds this run, completed at step {steps}: nothing to do (to train "
                    "further: --resume --max-steps N; to start over: --overwrite)", record=record)
    extends = any(k in changes for k in EXTENDING) and set(changes) <= set(SAFE_ON_RESUME)
    if not (resume and extends):
        raise _changed(path, f"a completed run ({steps} steps)", changes, resume, completed=True)
    if not done:
        raise RunDirError(f"{path}: the completed run kept no checkpoint to continue from: --overwrite to retrain")
    _check_length(config, changes, int(steps or 0))
    return Plan("extend", f"extending the completed run from {done[-1].name} (step {ckpt.step_of(done[-1])})",
                done[-1], changes, record=record)


def _inputs_changed(config: Config, path: Path, record: dict[str, Any]) -> list[str]:
    """What a completed run was trained on that changed since, though its config did not: the data files, the
    base model's files, the chat template's text (a template file edited in place)."""
    from tunesmith.models.fingerprint import base_fingerprint
    from tunesmith.tokenize.tokenizer import template_text

    changed = ["its data files have"] if _data_changed(config, record) else []
    if record.get("base_fingerprint") not in (None, base_fingerprint(config.base_model)):
        changed.append("the base model's files have")
    saved, text = path / "model" / "chat_template.jinja", template_text(config.chat_template)
    if text is not None and saved.is_file() and saved.read_text("utf-8") != text:
        changed.append(f"the chat template ({config.chat_template}) has")
    return changed


def _data_changed(config: Config, record: dict[str, Any]) -> bool:
    """The local data files no longer hash to the run's recorded data fingerprint (hub data: unknown)."""
    from tunesmith.data.pipeline import local_fingerprint

    recorded = record.get("data_fingerprint")
    current = local_fingerprint(config) if recorded else None
    return current is not None and current != recorded


def _check_length(config: Config, changes: dict[str, list[Any]], step: int) -> None:
    if "max_steps" in changes and 0 <= config.max_steps <= step:
        raise RunDirError(f"max_steps: {config.max_steps} is not beyond the run's step {step}: nothing to extend")


def _changed(path: Path, what: str, changes: dict[str, list[Any]], resume: bool, completed: bool = False) -> RunDirError:
    listed = "; ".join(f"{k}: {_show(old)} -> {_show(new)}" for k, (old, new) in changes.items())
    unsafe = [k for k in changes if k not in SAFE_ON_RESUME]
    if unsafe:
        hint = f"{', '.join(unsafe)} cannot change within a run"
    elif completed:
        hint = "only --resume with more max_steps / num_epochs continues a completed run"
    else:
        hint = "these changes are allowed with --resume" if not resume else ""
    return RunDirError(
        f"{path} holds {what} with a different config ({listed}); {hint + '; ' if hint else ''}"
        "run it with its own config (config.yaml there), or --overwrite to start over, or choose another output_dir"
    )


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def diff(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, list[Any]]:
    """Top-level keys whose values differ: key -> [old, new] (output_dir ignored)."""
    if old is None:
        return {}
    keys = [k for k in {**old, **new} if k not in _IGNORED]
    return {k: [old.get(k), new.get(k)] for k in keys if old.get(k) != new.get(k)}


def verify(plan: Plan, facts: dict[str, Any]) -> list[str]:
    """Differences between this run's data/tokenizer/base fingerprints and the record (resume only)."""
    names = {"data_fingerprint": "the data", "tokenizer_fingerprint": "the tokenizer or chat template",
             "base_fingerprint": "the base model's files"}
    return [f"{names[k]} changed ({k} {str(plan.record[k])[:12]} -> {str(v)[:12]})" for k, v in facts.items()
            if plan.record.get(k) is not None and plan.record[k] != v]


def _refuse_if_live(record: dict[str, Any], path: Path) -> None:
    import os

    pid = last_attempt(record).get("pid")
    if recorded_process_alive(record) and pid != os.getpid():
        raise RunDirError(f"{path}: another tunesmith process (pid {pid}) is training into this directory right now")


def last_attempt(record: dict[str, Any]) -> dict[str, Any]:
    """The last entry of run.json's ``attempts`` ({} when there is none or it is malformed)."""
    attempts = record.get("attempts")
    return attempts[-1] if isinstance(attempts, list) and attempts and isinstance(attempts[-1], dict) else {}


def recorded_process_alive(record: dict[str, Any]) -> bool | None:
    """Whether the process of a run recorded as starting or running still lives: its last attempt's pid,
    when that attempt ran on this host. None when it cannot be told (another status, host or no pid).
    ``resume`` refuses a live one; the dashboard shows a dead one as interrupted."""
    import socket

    attempt = last_attempt(record)
    pid, host = attempt.get("pid"), attempt.get("host")
    if record.get("status") not in ("starting", "running") or not pid or host != socket.gethostname():
        return None
    return pid_alive(pid)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _recorded_config(path: Path) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load((path / "config.yaml").read_text("utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None
