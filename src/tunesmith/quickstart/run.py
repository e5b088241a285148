"""``quickstart.run(options)``: the whole lifecycle offline, on a real pretrained model or a built one.

Stages: base model (the catalogue's pretrained model, converted once from its GGUF; or the base
tunesmith builds itself) -> data (generate the tasks, audit) -> LoRA fine-tune -> evaluate base
and fine-tuned on the held-out test split and the hand-written paraphrase split -> merge and
verify -> report. Every stage's time is recorded; everything lands in ``options.out_dir``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError

MARKER = "quickstart.json"
STAGES = ("base model", "data + audit", "fine-tune", "evaluate", "merge + verify", "report")


PROFILES = ("pretrained", "tiny", "fast")


@dataclass(frozen=True)
class QuickstartOptions:
    out_dir: Path = Path("outputs/quickstart")
    profile: str | None = None  # one of PROFILES; None: pretrained when its package is installed, else tiny
    cache_dir: Path | None = None  # default: tunesmith.models.cache_root()


def choose_profile(options: QuickstartOptions, say: Callable[[str], None]) -> str:
    """The profile to run: the one asked for, else the pretrained model when installed, else its fallback."""
    from tunesmith.models import catalogue
    from tunesmith.quickstart.base import recipe

    if options.profile is not None:
        if options.profile not in PROFILES:
            raise TunesmithError(f"quickstart profile {options.profile!r} is not one of {', '.join(PROFILES)}")
        return options.profile
    spec = recipe()["pretrained"]
    entry = catalogue.get(spec["model"])
    if entry is None:
        raise TunesmithError(f"recipe.yaml: pretrained.model {spec['model']!r} is not in the model catalogue")
    try:
        catalogue.locate(entry)
    except catalogue.CatalogueError as exc:  # not installed, another version, or its file missing: say which
        say(f"{exc}; so this run fine-tunes the small base tunesmith builds itself (profile {spec['fallback']})")
        return str(spec["fallback"])
    return "pretrained"


@dataclass
class QuickstartResult:
    out_dir: Path
    report: Path
    summary: dict[str, Any]
    stages: list[tuple[str, float]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        probe = self.summary.get("forgetting")
        return bool(self.summary["merge"]["passed"] and self.summary["improved"] and (probe is None or probe["passed"]))


def prepare_out_dir(out: Path) -> None:
    """Reuse a previous quickstart's folder (it has ``quickstart.json``); refuse any other non-empty one.

    The old contents are removed, the marker last (an interrupted clean-up leaves a folder the next run
    still recognises); a symbolic link to a quickstart folder is kept and its target emptied."""
    if out.exists() and not out.is_dir():
        raise TunesmithError(f"{out}: is a file, not a folder; choose another --out")
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise TunesmithError(f"{out}: exists, is not empty and is not a quickstart output; choose another --out")
        for entry in out.iterdir():
            if entry.name == MARKER:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        (out / MARKER).unlink()
    out.mkdir(parents=True, exist_ok=True)


def run(options: QuickstartOptions, say: Callable[[str], None] = print) -> QuickstartResult:
    """Run every stage; returns the summary (also written to ``quickstart.json``) and the report path."""
    out = options.out_dir
    prepare_out_dir(out)  # before the heavy imports: a wrong --out fails at once
    from tunesmith import evaluate, merge, train
    from tunesmith import audit
    from tunesmith.audit.render import to_html
    from tunesmith.quickstart import base, report, summary, workspace

    (out / MARKER).write_text(json.dumps({"status": "running"}), "utf-8")
    profile = choose_profile(options, say)
    clock = _Clock(say)
    log = _Log(out / "quickstart.log")
    with clock.stage("base model"):
        model = base.for_profile(profile, say=say, root=options.cache_dir)
        say(_base_line(model))
    with clock.stage("data + audit"):
        files = workspace.write_data(out, profile)
        if replayed := workspace.add_replay(out, model.path, profile, files):
            say(f"replay: {replayed} general requests answered by the base model itself, mixed into training "
                "(data/train/general.jsonl)")
        config = workspace.build_config(model.path, files, out, profile)
        checked = audit.run(config)
        (out / "audit.html").write_text(to_html(checked), "utf-8")
        (out / "audit.json").write_text(json.dumps(checked.to_dict(), indent=2, default=str), "utf-8")
        checked.enforce(config.audit.fail_on)
        say(f"audit: {checked.count('error')} errors, {checked.count('warning')} warnings (audit.html)")
    with clock.stage("fine-tune"):
        trained = train.run(config, overwrite=True, say=log)
    with clock.stage("evaluate"):
        evals = {name: evaluate.run(config, path, name=name, out_dir=out / "eval")
                 for name, path in (("base", model.path), ("tuned", trained.model_dir))}
        # evaluate also scores both on the forgetting probe (the bundled general set): summary.forgetting
        for name, result in evals.items():
            if result.cached_replies:
                say(f"evaluate {name}: {result.cached_replies} replies reused from the generation cache "
                    "(same model files, prompts and settings as an earlier run)")
    with clock.stage("merge + verify"):
        probes = merge.probe_prompts(config, base.recipe()["evaluate"]["merge_probes"])
        merged = merge.run(config, probes, out_dir=out / "merged")
        say(f"merge check: max |logit diff| {merged.max_abs_diff:.2e} on {merged.prompts} prompts "
            f"({'passed' if merged.passed else 'FAILED'})")
    with clock.stage("report"):
        facts = summary.collect(options.out_dir, profile, model, config, trained, evals, merged, clock.stages)
        data = summary.report_data(facts, evals, config)
        page = report.write(data, out / "report.html")
    facts["stages"], facts["total_seconds"] = clock.stages, round(sum(s for _, s in clock.stages), 1)
    facts["targets"] = summary.targets(profile, facts["metrics"], facts["total_seconds"], model.built_now)
    (out / MARKER).write_text(json.dumps(facts, indent=2, default=str), "utf-8")
    return QuickstartResult(out, page, facts, clock.stages)


def _base_line(model: Any) -> str:
    card = model.card
    if card.get("kind") == "pretrained":
        state = "converted now" if model.built_now else "cached"
        return (f"{card['name']}: {card['parameters']:,}-parameter {card['architecture']} ({card['licence']}), "
                f"{state}: {model.path}")
    return f"{'built' if model.built_now else 'reused'} {card['parameters']:,}-parameter base: {model.path}"


class _Clock:
    """Times each stage and announces it."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.stages: list[tuple[str, float]] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.say(f"[{len(self.stages) + 1}/{len(STAGES)}] {name}")
        t0 = time.perf_counter()
        yield
        self.stages.append((name, round(time.perf_counter() - t0, 2)))


class _Log:
    """Training chatter goes to ``quickstart.log``; warnings are also shown."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, line: str) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        if line.startswith(("warning", "audit error")):
            print(line)
