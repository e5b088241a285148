"""``tunesmith evaluate CONFIG [--model DIR] [--base] [--compare A B]``: score models on the config's
held-out tasks and probes, or compare two with a judge; write eval/report.html."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def evaluate(
    config_path: Path = typer.Argument(..., metavar="CONFIG", help="Run config with eval_tasks."),
    model: str | None = typer.Option(None, "--model", help="Model folder to score (default: the run's model/)."),
    base: bool = typer.Option(False, "--base", help="Also score base_model and show both side by side."),
    compare: tuple[str, str] | None = typer.Option(
        None, "--compare", metavar="A B",
        help="Judge two models pairwise (each pair twice, order swapped); 'base' = base_model, 'model' = the run's "
             "model. Needs a judge: section."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key: key=value (dotted for nested)."),
) -> None:
    """Generate on every held-out task with the training template and system prompt, score the replies,
    run the forgetting probes, and write every generation, verdict and score to <output_dir>/eval/."""
    import json

    from transformers.utils import logging as hf_logging

    from tunesmith import evaluate as stage
    from tunesmith.config import load_config

    hf_logging.disable_progress_bar()
    config = load_config(str(config_path), set_)
    out = Path(config.output_dir) / "eval"
    if compare:
        _compare(config, compare, out, as_json)
        return
    results = {"model": stage.run(config, model, name="model", out_dir=out)}
    if base:
        results = {"base": stage.run(config, config.base_model, name="base", out_dir=out), **results}
    for name, result in results.items():
        for note in result.notes:
            typer.echo(f"note ({name}): {note}", err=True)
    page = _report(results, out)
    table = {name: {task: t.score.metrics for task, t in r.tasks.items()} for name, r in results.items()}
    if as_json:
        extra = {"health": {n: {t: r.tasks[t].score.health for t in r.tasks} for n, r in results.items()},
                 "probes": {n: r.probes.to_dict() for n, r in results.items() if r.probes is not None}}
        typer.echo(json.dumps({**table, **extra}, indent=2))
        return
    _print(results, config.probes.max_drop)
    typer.echo(f"metrics, every generation and score: {out}/ (report: {page})")


def _target(config: Any, name: str) -> str:
    if name == "base":
        return str(config.base_model)
    if name == "model":
        return str(Path(config.output_dir) / "model")
    return name


def _compare(config: Any, pair: tuple[str, str], out: Path, as_json: bool) -> None:
    import json

    from tunesmith import evaluate as stage
    from tunesmith.evaluate.report import load_side, write

    a, b = (_target(config, x) for x in pair)
    names = (pair[0] if pair[0] in ("base", "model") else stage.compare_label(a),
             pair[1] if pair[1] in ("base", "model") else stage.compare_label(b))
    result = stage.compare(config, a, b, names=names, out_dir=out)
    na, nb = result.names
    page = write(load_side(result.a.files[0], na), load_side(result.b.files[0], nb), out / f"report_{na}_vs_{nb}.html",
                 title=f"tunesmith evaluate: {na} vs {nb}", summary=_verdict_line(result.overall, na, nb),
                 compare=result.to_dict())
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    view = Table(title=f"pairwise: {na} vs {nb} (each pair judged twice, order swapped)", title_justify="left")
    for column in ("task", "judged", f"{na} wins", "ties", f"{nb} wins", "orders agree", "first shown wins",
                   "longer wins", "failed"):
        view.add_column(column, justify="left" if column == "task" else "right")
    for task, s in [("all tasks", result.overall), *result.tasks.items()]:
        view.add_row(task, str(s["judged"]), *(_share(s["shares"][k]) for k in ("wins", "ties", "losses")),
                     f"{s['agreement']:.0%}", _maybe(s["position_bias"]["share"]), _maybe(s["length_bias"]["share"]),
                     str(s["failed"]))
    Console(highlight=False).print(view)
    typer.echo(_verdict_line(result.overall, na, nb))
    typer.echo(f"every verdict: {result.files[-1]} (report: {page})")


def _share(entry: dict[str, Any]) -> str:
    low, high = entry["ci95"]
    return f"{entry['share']:.0%} [{low:.0%}-{high:.0%}]"


def _maybe(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _verdict_line(s: dict[str, Any], a: str, b: str) -> str:
    return (f"{a} won {s['wins']}, tied {s['ties']}, lost {s['losses']} of {s['judged']} judged pairs "
            f"({s['failed']} failed); 95 % interval of {a}'s win share: "
            f"{s['shares']['wins']['ci95'][0]:.0%}-{s['shares']['wins']['ci95'][1]:.0%}.")


def _report(results: dict[str, Any], out: Path) -> Path:
    from tunesmith.evaluate.report import load_side, write

    right = load_side(results["model"].files[0], "model")
    left = load_side(results["base"].files[0], "base") if "base" in results else None
    tasks = ", ".join(f"{t}: {s.score.main} {s.score.metrics.get(s.score.main, 0):.1%}"
                      for t, s in results["model"].tasks.items())
    return write(left, right, out / "report.html", title="tunesmith evaluate", summary=f"model \u2014 {tasks}")


def _print(results: dict[str, Any], max_drop: float) -> None:
    from rich.console import Console
    from rich.table import Table

    from tunesmith.evaluate import interval

    names = list(results)
    first = results[names[-1]]
    view = Table(title="held-out tasks", title_justify="left")
    for column in ("task", "metric", *names):
        view.add_column(column, justify="left" if column in ("task", "metric") else "right")
    for task, t in first.tasks.items():
        score = t.score
        weak = " (weak)" if score.weak else ""
        for metric in score.metrics:
            label = f"{metric} *" if metric == score.main else metric
            view.add_row(task, label + weak, *(_pct(results[n].tasks[task].score.metrics.get(metric)) for n in names))
            if metric == score.main and score.interval is not None:
                view.add_row(task, f"{metric} 95 % interval", *(_span(results[n].tasks[task].score.interval)
                                                                 for n in names))
        for metric in ("stop_rate", "max_tokens_rate", "loop_rate"):
            view.add_row(task, metric, *(_pct(results[n].tasks[task].score.health.get(metric)) for n in names))
        if t.excluded:
            view.add_row(task, "contaminated rows left out", *(str(results[n].tasks[task].excluded) for n in names))
    if first.probes is not None:
        view.add_row("probes", "accuracy *", *(_pct(results[n].probes.accuracy) for n in names))
        for cat in first.probes.categories:
            view.add_row("probes", cat, *(_pct(results[n].probes.categories[cat]["accuracy"]) for n in names))
    Console(highlight=False).print(view)
    for line in interval.wide_notes(first.tasks):
        typer.echo(line)
    if "base" in results and first.probes is not None and results["base"].probes is not None:
        _print_drops(results, max_drop)


def _print_drops(results: dict[str, Any], max_drop: float) -> None:
    from tunesmith.evaluate import probes

    drops = probes.compare(results["base"].probes, results["model"].probes, max_drop)
    for cat in drops["flagged"]:
        entry = drops["categories"][cat]
        typer.echo(f"forgetting: probes/{cat} fell from {entry['base']:.0%} to {entry['candidate']:.0%} "
                   f"({entry['drop']:.0%} drop > {drops['max_drop']:.0%})")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _span(value: Any) -> str:
    return "-" if value is None else f"{100 * value.low:.1f}-{100 * value.high:.1f}%"
