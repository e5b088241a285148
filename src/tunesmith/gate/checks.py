"""The gate's checks: one function per check, in one table (``CHECKS``), each reading the
candidate's and baseline's ``eval_<name>.json`` summaries and returning its verdict lines.

- ``golden``: every golden task's headline metric >= ``ratio`` x the baseline's (judge-scored and
  weak-signal tasks aside); categories listed, and held to ``category_ratio`` when it is set. With
  ``noise_alpha`` (the default), a task below the ratio whose drop is within row noise (paired sign
  test, ``gate.noise``) and at most ``max_drop`` is a warning, not a failure. A headline the
  baseline lacks, or a baseline of another version of the task (another scorer, or rows of the
  same source with another prompt or gold) fails; other rows (a subset) warn.
- ``format``: every task with a format metric (schema compliance, valid label, parse rate) >= ``min``.
- ``capability``: probe accuracy >= ``ratio`` x the baseline's; each probe category that fell
  by more than ``max_category_drop`` is a warning (or a failure: ``category_drop: fail``).
- ``health``: every task's stop rate >= ``min_stop_rate`` (loop rate <= ``max_loop_rate``); the
  probes' stop rate is listed, not gated (general prompts may rightly run long).
- ``judge``: judge-scored tasks: ``judge_score`` >= ``ratio`` x the baseline's, failures <= ``max_failure_rate``
  in the candidate and in the baseline; another judge model, rubric name or rubric content fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunesmith.config.schema import GateConfig, GoldenGate
from tunesmith.gate.noise import sign_test

Summary = dict[str, Any]
_EPS = 1e-9


@dataclass
class Line:
    """One verdict: ``status`` is ``pass``, ``fail``, ``warn`` (does not fail the gate) or ``info``."""

    check: str
    subject: str
    metric: str
    candidate: float | None
    baseline: float | None
    threshold: float | None
    status: str
    note: str = ""
    op: str = ">="  # how candidate compares with threshold: ">=" or "<="

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _at_least(check: str, subject: str, metric: str, value: float | None, base: float | None,
              threshold: float, note: str = "") -> Line:
    ok = value is not None and value >= threshold - _EPS
    return Line(check, subject, metric, value, base, threshold, "pass" if ok else "fail", note)


def _missing(check: str, what: str, config: GateConfig) -> list[Line]:
    status = "fail" if config.missing == "fail" else "info"
    return [Line(check, "-", "-", None, None, None, status, f"no {what} (missing: {config.missing})")]


def _tasks(summary: Summary) -> dict[str, Any]:
    return summary.get("tasks") or {}


def golden(cand: Summary, base: Summary, config: GateConfig) -> list[Line]:
    cfg = config.golden
    wanted = cfg.tasks or [n for n, t in _tasks(base).items() if t["scorer"] != "judge" and not t.get("weak")]
    if not wanted:
        return _missing("golden", "golden task in the baseline", config)
    lines = []
    for name in wanted:
        b, c = _tasks(base).get(name), _tasks(cand).get(name)
        if b is None or c is None:
            side = "baseline" if b is None else "candidate"
            lines.append(Line("golden", name, "-", None, None, None, "fail", f"task missing from the {side}"))
            continue
        main = b["main"]
        before, after = b["metrics"].get(main), c["metrics"].get(main)
        if before is None:  # nothing to hold the candidate to: never a pass
            lines.append(Line("golden", name, main, after, None, None, "fail", "metric missing from the baseline"))
            continue
        line = _at_least("golden", name, main, after, before, cfg.ratio * before, f"{cfg.ratio:g} x baseline")
        lines.append(_within_noise(line, cand, base, name, cfg))
        lines.extend(_other_rows(cand, base, name, b, c))
        lines.extend(_other_version(cand, base, name, b, c))
        for cat, entry in (c.get("categories") or {}).items():
            b_cat = (b.get("categories") or {}).get(cat, {}).get("metrics", {}).get(main)
            value = entry["metrics"].get(main)
            if cfg.category_ratio is not None and b_cat is not None:
                lines.append(_at_least("golden", f"{name} / {cat}", main, value, b_cat, cfg.category_ratio * b_cat,
                                       f"{cfg.category_ratio:g} x baseline"))
            else:
                lines.append(Line("golden", f"{name} / {cat}", main, value, b_cat, None, "info", f"n={entry['n']}"))
    return lines


def _within_noise(line: Line, cand: Summary, base: Summary, task: str, cfg: GoldenGate) -> Line:
    """A failed golden line becomes a warning when its drop is at most ``max_drop`` and the paired
    rows do not show it beyond noise (sign test p >= ``noise_alpha``); the note says which."""
    if line.status != "fail" or cfg.noise_alpha is None or line.candidate is None or line.baseline is None:
        return line
    drop = line.baseline - line.candidate
    if drop <= 0:  # ratio > 1 asks for a gain: noise may excuse a small drop, never a gain not made
        line.note += f"; ratio {cfg.ratio:g} asks for a gain: row noise does not excuse one not made"
        return line
    before, after = base.get("_rows", {}).get(task, {}), cand.get("_rows", {}).get(task, {})
    paired = sign_test(before, after)
    if paired is None:
        line.note += ("; no row is in both evaluations (other rows): judged by the ratio alone" if before and after
                      else "; no per-row results to pair (judged by the ratio alone)")
        return line
    noise = paired.p >= cfg.noise_alpha
    if noise and drop <= cfg.max_drop + _EPS:
        line.status = "warn"
        line.note += f"; within row noise: {paired.describe()} >= {cfg.noise_alpha:g}, drop {drop:.3g} <= {cfg.max_drop:g}"
    else:
        why = f"drop {drop:.3g} > max_drop {cfg.max_drop:g}" if noise else f"p < {cfg.noise_alpha:g}"
        line.note += f"; beyond noise: {paired.describe()}, {why}"
    return line


def _other_rows(cand: Summary, base: Summary, task: str, b: dict[str, Any], c: dict[str, Any]) -> list[Line]:
    """A warning when the two evaluations of ``task`` scored different rows (another task file, a
    subset, other contamination exclusions): their figures are then not comparable row for row."""
    before, after = set(base.get("_asked", {}).get(task, {})), set(cand.get("_asked", {}).get(task, {}))
    why = f"n {c.get('n')} vs {b.get('n')}"
    if before and after and before != after:
        why += f"; {len(before - after)} row(s) only in the baseline, {len(after - before)} only in the candidate"
    elif b.get("n") == c.get("n"):
        return []
    return [Line("golden", task, "rows", None, None, None, "warn",
                 f"scored on other rows than the baseline ({why}): evaluate both on the same task file")]


def _other_version(cand: Summary, base: Summary, task: str, b: dict[str, Any], c: dict[str, Any]) -> list[Line]:
    """A failure when the two evaluations of ``task`` are of different versions of it -- another scorer,
    or rows of the same source with another prompt or gold (an edited task file): the figures, and
    the rows the noise test pairs, would compare different questions."""
    before, after = base.get("_asked", {}).get(task, {}), cand.get("_asked", {}).get(task, {})
    changed = sum(1 for source in before.keys() & after.keys() if before[source] != after[source])
    why = [f"scorer {b.get('scorer')!r} -> {c.get('scorer')!r}"] if b.get("scorer") != c.get("scorer") else []
    if changed:
        why.append(f"{changed} of {len(before.keys() & after.keys())} rows of the same source have another "
                   "prompt or gold")
    if not why:
        return []
    return [Line("golden", task, "task", None, None, None, "fail",
                 f"evaluated on another version of the task than the baseline ({'; '.join(why)}): not comparable; "
                 "evaluate both on the same task file and scorer")]


def format_(cand: Summary, base: Summary, config: GateConfig) -> list[Line]:
    lines = []
    for name, task in _tasks(cand).items():
        metric = task.get("format")
        if not metric:
            continue
        before = (_tasks(base).get(name) or {}).get("metrics", {}).get(metric)
        lines.append(_at_least("format", name, metric, task["metrics"].get(metric), before, config.format.min))
        for cat, entry in (task.get("categories") or {}).items():
            lines.append(Line("format", f"{name} / {cat}", metric, entry["metrics"].get(metric), None, None, "info",
                              f"n={entry['n']}"))
    return lines


def capability(cand: Summary, base: Summary, config: GateConfig) -> list[Line]:
    cfg = config.capability
    c, b = cand.get("probes"), base.get("probes")
    if not c or not b:
        return _missing("capability", f"probe results in the {'candidate' if not c else 'baseline'}", config)
    lines = [_at_least("capability", "probes", "accuracy", c["accuracy"], b["accuracy"], cfg.ratio * b["accuracy"],
                       f"{cfg.ratio:g} x baseline")]
    sets = [(Path(str(side.get("path"))).name, side.get("n")) for side in (c, b)]
    if sets[0] != sets[1]:  # as a golden task scored on other rows: said, not failed
        lines.append(Line("capability", "probes", "items", None, None, None, "warn",
                          f"scored on another probe set than the baseline ({sets[0][0]}, n {sets[0][1]} vs "
                          f"{sets[1][0]}, n {sets[1][1]}): evaluate both with the same probes"))
    for cat, entry in b["categories"].items():
        before = entry["accuracy"]
        after = c["categories"].get(cat, {}).get("accuracy", 0.0)
        drop = (before - after) / before if before > 0 else 0.0
        status = "pass" if drop <= cfg.max_category_drop + _EPS else cfg.category_drop
        lines.append(Line("capability", f"probes / {cat}", "accuracy", after, before,
                          before * (1 - cfg.max_category_drop), status, f"drop {drop:.0%}"))
    return lines


def health(cand: Summary, base: Summary, config: GateConfig) -> list[Line]:
    cfg = config.health
    subjects = [(n, t.get("health") or {}) for n, t in _tasks(cand).items()]
    lines = []
    probe_stats = (cand.get("probes") or {}).get("health") or {}
    if "stop_rate" in probe_stats:  # general prompts: reported, not gated
        lines.append(Line("health", "probes", "stop_rate", probe_stats["stop_rate"],
                          _base_health(base, "probes").get("stop_rate"), None, "info", "not gated"))
    for name, stats in subjects:
        if "stop_rate" not in stats:
            continue
        before = _base_health(base, name).get("stop_rate")
        lines.append(_at_least("health", name, "stop_rate", stats["stop_rate"], before, cfg.min_stop_rate))
        if cfg.max_loop_rate is not None:
            ok = stats.get("loop_rate", 0.0) <= cfg.max_loop_rate + _EPS
            lines.append(Line("health", name, "loop_rate", stats.get("loop_rate"), _base_health(base, name).get("loop_rate"),
                              cfg.max_loop_rate, "pass" if ok else "fail", op="<="))
    if not any(line.status != "info" for line in lines):
        return lines + _missing("health", "generation-health metrics in the candidate", config)
    return lines


def _base_health(base: Summary, name: str) -> dict[str, float]:
    if name == "probes":
        return (base.get("probes") or {}).get("health") or {}
    return (_tasks(base).get(name) or {}).get("health") or {}


def judge(cand: Summary, base: Summary, config: GateConfig) -> list[Line]:
    cfg = config.judge
    lines = [Line("judge", name, "-", None, None, None, "fail" if config.missing == "fail" else "info",
                  f"task missing from the candidate (missing: {config.missing})")
             for name, task in _tasks(base).items() if task["scorer"] == "judge" and name not in _tasks(cand)]
    for name, task in _tasks(cand).items():
        if task["scorer"] != "judge":
            continue
        base_task = _tasks(base).get(name) or {}
        failure = task["metrics"].get("judge_failure_rate", 1.0)
        base_failure = base_task.get("metrics", {}).get("judge_failure_rate") if base_task else None
        lines.append(_at_most(name, "judge_failure_rate", failure, base_failure, cfg.max_failure_rate))
        held = _at_most(f"{name} (baseline)", "judge_failure_rate", base_failure, None, cfg.max_failure_rate,
                        "the baseline's judge failed on too many rows (or does not say how many): its score is no baseline")
        if base_task and held.status == "fail":  # a score over a few rows compared as if over all
            lines.append(held)
        before = base_task.get("metrics", {}).get("judge_score")
        if before is not None:
            lines.append(_at_least("judge", name, "judge_score", task["metrics"].get("judge_score"), before,
                                   cfg.ratio * before, f"{cfg.ratio:g} x baseline"))
            lines.extend(_other_judge(name, task, _tasks(base)[name]))
    return lines


def _at_most(subject: str, metric: str, value: float | None, base: float | None, limit: float,
             note: str = "") -> Line:
    ok = value is not None and value <= limit + _EPS  # NaN or missing: never within the limit
    return Line("judge", subject, metric, value, base, limit, "pass" if ok else "fail", note, op="<=")


def _other_judge(name: str, cand: dict[str, Any], base: dict[str, Any]) -> list[Line]:
    """A failure when the two judge scores come from different judges or rubrics: not comparable."""
    c, b = cand.get("extra") or {}, base.get("extra") or {}
    changed = [f"{key} {b.get(key)!r} -> {c.get(key)!r}" for key in ("model", "rubric") if c.get(key) != b.get(key)]
    prints = b.get("rubric_fingerprint"), c.get("rubric_fingerprint")  # older results have none
    if not changed and None not in prints and prints[0] != prints[1]:
        changed.append(f"rubric {c.get('rubric')!r} edited: fingerprint {prints[0]} -> {prints[1]}")
    if not changed:
        return []
    return [Line("judge", name, "judge", None, None, None, "fail",
                 f"judged differently from the baseline ({', '.join(changed)}): its scores are not comparable; "
                 "judge both with the same judge and rubric")]


CHECKS: dict[str, Callable[[Summary, Summary, GateConfig], list[Line]]] = {
    "golden": golden,
    "format": format_,
    "capability": capability,
    "health": health,
    "judge": judge,
}
