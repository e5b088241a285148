"""``gate.run(candidate, baseline, config) -> GateResult``: may this model ship?

``candidate`` and ``baseline`` are evaluation results on disk: an ``eval_<name>.json`` file, or
a folder holding one (a run directory, its ``eval/`` folder, a quickstart folder). Every check of
``checks.CHECKS`` that is enabled runs; the gate passes when no line failed. Writes
``gate.json`` (every line), ``gate.md`` (a summary for a CI log or PR comment) and ``gate.html``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config.schema import GateConfig
from tunesmith.errors import TunesmithError
from tunesmith.gate.checks import CHECKS, Line
from tunesmith.gate.noise import asked, by_task

# which eval_<name>.json a folder stands for, most likely first
_PREFERRED = ("eval_model.json", "eval_tuned.json", "eval_candidate.json")
_FOLDERS = ("", "eval", "run/eval")


def resolve(path: str | Path) -> Path:
    """The ``eval_<name>.json`` that ``path`` stands for (see the module docstring)."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_dir():
        raise TunesmithError(f"{p}: no such file or folder (expected an eval_<name>.json or a run folder)")
    for sub in _FOLDERS:
        folder = p / sub if sub else p
        for name in _PREFERRED:
            if (folder / name).is_file():
                return folder / name
        found = sorted(folder.glob("eval_*.json")) if folder.is_dir() else []
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(f.name for f in found)
            raise TunesmithError(f"{folder}: several evaluation results ({names}); pass the file to use")
    raise TunesmithError(f"{p}: no evaluation results (eval_<name>.json) here, in eval/ or in run/eval/; "
                         "run `tunesmith evaluate` first")


_TASK_KEYS = ("scorer", "main", "metrics")  # what every check reads of a task


def load_summary(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise TunesmithError(f"{path}: not a readable evaluation result: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
        raise TunesmithError(f"{path}: not an evaluation result (no 'tasks'); expected what `tunesmith evaluate` writes")
    for name, task in data["tasks"].items():
        lacks = [k for k in _TASK_KEYS if not isinstance(task, dict) or k not in task]
        if lacks:
            raise TunesmithError(f"{path}: tasks.{name} is not an evaluation result entry (no {', '.join(lacks)}); "
                                 "expected what `tunesmith evaluate` writes")
    return data


@dataclass
class GateResult:
    passed: bool
    lines: list[Line]
    candidate: Path
    baseline: Path
    config: GateConfig
    files: list[Path] = field(default_factory=list)

    @property
    def failures(self) -> list[Line]:
        return [line for line in self.lines if line.status == "fail"]

    @property
    def warnings(self) -> list[Line]:
        return [line for line in self.lines if line.status == "warn"]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "candidate": str(self.candidate), "baseline": str(self.baseline),
                "failures": len(self.failures), "warnings": len(self.warnings),
                "config": self.config.model_dump(mode="json"), "lines": [line.to_dict() for line in self.lines]}


def run(candidate: str | Path, baseline: str | Path, config: GateConfig | None = None, *,
        out_dir: Path | None = None) -> GateResult:
    """Run the enabled checks and write gate.json, gate.md and gate.html to ``out_dir`` (default:
    the folder of the candidate's evaluation result)."""
    from tunesmith.evaluate.report import Side
    from tunesmith.gate.summary import markdown, write_html

    config = config or GateConfig()
    cand_path, base_path = resolve(candidate), resolve(baseline)
    cand, base = load_summary(cand_path), load_summary(base_path)
    cand_rows, base_rows = _scored_rows(cand_path), _scored_rows(base_path)  # read once: noise test and gate.html
    if config.golden.noise_alpha is not None:  # per-row results, for the golden check's noise test
        cand["_rows"], base["_rows"] = by_task(cand_rows), by_task(base_rows)
    cand["_asked"], base["_asked"] = asked(cand_rows), asked(base_rows)  # the same rows, the same version?
    lines: list[Line] = []
    for name, check in CHECKS.items():
        if getattr(config, name).enabled:
            lines += check(cand, base, config)
    result = GateResult(not any(line.status == "fail" for line in lines), lines, cand_path, base_path, config)
    out = out_dir or cand_path.parent
    out.mkdir(parents=True, exist_ok=True)
    (out / "gate.json").write_text(json.dumps(result.to_dict(), indent=2), "utf-8")
    (out / "gate.md").write_text(markdown(result), "utf-8")
    sides = (Side("baseline", base_path, base, base_rows), Side("candidate", cand_path, cand, cand_rows))
    result.files = [out / "gate.json", out / "gate.md", write_html(result, out / "gate.html", sides)]
    return result


def _scored_rows(path: Path) -> list[dict[str, Any]]:
    """The scored rows written beside an evaluation result (none when absent); a damaged file is
    one error naming it."""
    from tunesmith.evaluate.output import generations_path, read_generations

    try:
        return read_generations(path)
    except (OSError, ValueError) as exc:
        raise TunesmithError(f"{generations_path(path)}: not readable as the scored rows of {path.name}: "
                             f"{str(exc).splitlines()[0]}") from None
