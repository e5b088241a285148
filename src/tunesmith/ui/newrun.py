"""The New run page: a config file + overrides -> the resolved config and the plan, then training.

Nothing starts before the page has shown the resolved config and ``tunesmith.plan``'s estimate;
starting runs ``tunesmith train CONFIG --set ...`` as its own process (the run directory is the
config's ``output_dir``; the Runs page follows it live; its output goes to
``.ui-logs/<run name>.log`` beside the run directory). A second start into an ``output_dir``
whose training this dashboard started and which still runs is refused.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError

# the training processes this dashboard started, by resolved output_dir (Start twice is refused)
_STARTED: dict[Path, tuple[subprocess.Popen[bytes], Path]] = {}
_STARTED_LOCK = threading.Lock()


@dataclass
class Checked:
    """A resolved config, its annotated YAML and the plan (or why the plan could not be made)."""

    config: Any
    yaml: str
    plan: dict[str, Any] | None
    plan_error: str | None


def overrides(text: str) -> list[str]:
    """``key=value`` lines (blank lines and ``#`` comments ignored); a line without ``=`` is an error."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line or line.startswith("="):
            raise TunesmithError(f"overrides line {number}: expected key=value (got {line!r})")
        out.append(line)
    return out


def check(path: str, override_text: str) -> Checked:
    """Resolve ``path`` with the overrides and plan it; config errors raise (file:line, key)."""
    from tunesmith.config import load_config
    from tunesmith.config.annotate import annotated_yaml
    from tunesmith.plan import run as plan

    if not path.strip():
        raise TunesmithError("config: give the path of a YAML config file")
    if not Path(path).is_file():
        raise TunesmithError(f"{path}: no such config file")
    config = load_config(path, overrides(override_text))
    try:
        estimate, problem = plan(config, name=path).as_dict(), None
    except TunesmithError as exc:
        estimate, problem = None, str(exc)
    return Checked(config, annotated_yaml(config, full=True), estimate, problem)


def start(path: str, override_text: str, checked: Checked,
          log: Path | None = None) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``tunesmith train`` on the config ``check`` resolved in a new process; its output goes
    to ``log`` (default: ``.ui-logs/<run name>.log`` beside the run directory, never inside it:
    train refuses a non-empty folder that is not yet a run)."""
    out = Path(checked.config.output_dir)
    log = log or out.parent / ".ui-logs" / f"{out.name}.log"
    args = train_command(path, override_text)
    with _STARTED_LOCK:
        _refuse_if_started(out.resolve())
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as fh:
            process = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        _STARTED[out.resolve()] = (process, log)
    threading.Thread(target=process.wait, name="tunesmith-ui-train", daemon=True).start()  # no zombie left
    return process, log


def train_command(path: str, override_text: str) -> list[str]:
    """``tunesmith train PATH --set key=value ...`` on this interpreter."""
    return [sys.executable, "-m", "tunesmith.cli.main", "train", path,
            *(a for item in overrides(override_text) for a in ("--set", item))]


def _refuse_if_started(out: Path) -> None:
    """Refuse a second start into ``out`` while the process this dashboard started there lives
    (Start pressed twice, a reload re-posting the form): two trainings would write one run directory."""
    started = _STARTED.get(out)
    if started is None:
        return
    process, log = started
    if process.poll() is None:
        raise TunesmithError(f"output_dir {out}: this dashboard already started a training into it (pid "
                             f"{process.pid}, still running; output: {log}); wait for it to end (follow it on "
                             "Runs) or choose another output_dir")
    del _STARTED[out]
