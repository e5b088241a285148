"""``tunesmith flywheel mine --db PATH [--since T] [--out DIR] [--signal KIND] [--set KIND.KEY=V] [--judge-url U]``."""

from __future__ import annotations

from pathlib import Path

import typer


def mine(
    db: Path = typer.Option(..., "--db", help="The request log of `tunesmith serve --db`."),
    out: Path = typer.Option(Path("flywheel/mined"), "--out", help="Where queue.jsonl, queue.csv, positives.jsonl "
                             "and mine.json go."),
    since: str | None = typer.Option(None, "--since", help="Only requests from then on: unix seconds or an ISO date/time."),
    model: str | None = typer.Option(None, "--model", help="Only requests that named this model."),
    signal: list[str] = typer.Option([], "--signal", help="Only these signals (repeatable; default all)."),
    set_: list[str] = typer.Option([], "--set", help="A signal setting: KIND.KEY=VALUE (see flywheel/signals.yaml)."),
    threshold: float = typer.Option(0.8, "--cluster-threshold", min=0.05, max=1.0,
                                    help="Jaccard of prompt shingles that puts two requests in one cluster."),
    judge_url: str | None = typer.Option(None, "--judge-url", help="OpenAI-compatible base URL for judge scores."),
    judge_model: str | None = typer.Option(None, "--judge-model", help="The judge's model name."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a queue already in --out."),
) -> None:
    """Flag requests (thumbs-down, correction, format failure, judge score, low confidence, refusal), cluster
    near-duplicate prompts, rank clusters by size x severity and write the review queue."""
    from tunesmith.config.schema import JudgeConfig
    from tunesmith.errors import ConfigError
    from tunesmith.flywheel import MineOptions
    from tunesmith.flywheel import mine as stage

    judge = None
    if judge_url or judge_model:
        if not (judge_url and judge_model):
            raise ConfigError("--judge-url and --judge-model go together")
        judge = JudgeConfig(base_url=judge_url, model=judge_model)
    options = MineOptions(db=db, out=out, since=_time(since), model=model, kinds=tuple(signal),
                          settings=_settings(set_), cluster_threshold=threshold, judge=judge, overwrite=overwrite)
    result = stage(options)
    typer.echo(f"{result.requests} requests, {result.flagged} flagged, {len(result.items)} review items, "
               f"{result.positives} positives")
    typer.echo("signals: " + ", ".join(f"{k} {v}" for k, v in result.signals.items()))
    for item in result.items[:10]:
        prompt = str(item["messages"][-1].get("content") or "").replace("\n", " ")[:70]
        typer.echo(f"  #{item['rank']:<3} x{item['size']:<4} {item['priority']:>6.2f}  "
                   f"{','.join(item['signals'])}  {prompt}")
    typer.echo(f"queue: {result.out / 'queue.jsonl'} (and queue.csv); next: tunesmith flywheel review "
               f"{result.out / 'queue.jsonl'}")


def _time(value: str | None) -> float | None:
    from datetime import datetime, timezone

    from tunesmith.errors import ConfigError

    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--since: {value!r} is neither unix seconds nor an ISO date/time") from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def _settings(pairs: list[str]) -> dict[str, dict[str, float]]:
    from tunesmith.errors import ConfigError

    out: dict[str, dict[str, float]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        kind, dot, name = key.partition(".")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or not dot or number is None:
            raise ConfigError(f"--set {pair!r}: expected KIND.KEY=NUMBER (e.g. low_confidence.max_mean_logprob=-2)")
        out.setdefault(kind, {})[name] = number
    return out
