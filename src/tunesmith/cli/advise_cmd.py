"""``tunesmith advise [--answers FILE] [--out CONFIG] [--gpu NAME] [--json]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def advise(
    answers: str = typer.Option(None, "--answers", help="YAML file of answers (non-interactive); keys as in plan/advise.yaml."),
    out: str = typer.Option(None, "--out", help="Write the starter config here (when the outcome involves training)."),
    gpu: str = typer.Option(None, "--gpu", help="Put this GPU in the starter config's hardware section."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome, reasons and starter config as JSON."),
) -> None:
    """Prompting, RAG, fine-tuning or FT+RAG? Walks the seed's decision tables; writes a starter config."""
    import json

    from tunesmith.plan.advise import decide, dump, questions, starter_config

    if gpu:
        from tunesmith.config.gpus import canonical_gpu, unknown_gpu_message

        if canonical_gpu(gpu) is None:
            raise typer.BadParameter(unknown_gpu_message(gpu), param_hint="--gpu")
        gpu = canonical_gpu(gpu)
    given = _read_answers(answers) if answers else None
    where = f"{answers}: " if answers else ""
    values = _ask(questions(training=False), given, where)
    advice = decide(values)
    if advice.outcome in ("fine-tuning", "ft+rag"):
        values.update(_ask(questions(training=True), given, where))
        advice.answers = values
        advice.starter, advice.starter_reasons = starter_config(advice, gpu)
    if as_json:
        typer.echo(json.dumps(advice.as_dict(), indent=2))
    else:
        _print(advice)
    if advice.starter is not None:
        text = dump(advice.starter)
        if out:
            _write_out(Path(out), text)
            if not as_json:
                typer.echo(f"starter config written to {out} (next: tunesmith plan {out})")
        elif not as_json:
            typer.echo("\nstarter config (--out FILE writes it):\n" + text)


def _write_out(path: Path, text: str) -> None:
    """The starter config, never over an existing file (a config the user wrote) and with the folder named when
    it is missing."""
    from tunesmith.errors import TunesmithError

    if path.exists():
        raise TunesmithError(f"--out {path}: already exists; choose another file (the starter config does not "
                             "replace one)")
    if not path.parent.is_dir():
        raise TunesmithError(f"--out {path}: the folder {path.parent} does not exist")
    path.write_text(text, "utf-8")


def _read_answers(path: str) -> dict[str, Any]:
    import yaml

    from tunesmith.plan.advise import AdviseError

    p = Path(path)
    if not p.is_file():
        raise AdviseError(f"{path}: answers file not found")
    try:
        data = yaml.safe_load(p.read_text("utf-8")) or {}
    except yaml.YAMLError as exc:
        raise AdviseError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise AdviseError(f"{path}: answers must be a mapping of key: answer")
    from tunesmith.errors import did_you_mean
    from tunesmith.plan.advise import questions

    known = {q["key"] for q in questions()}
    for key in data:
        if key not in known:
            hint = did_you_mean(key, sorted(known))
            raise AdviseError(f"{path}: {key}: unknown question{hint}; known: {', '.join(sorted(known))}")
    return data


def _ask(qs: list[dict[str, Any]], given: dict[str, Any] | None, where: str) -> dict[str, str]:
    from tunesmith.plan.advise import AdviseError, check_answer

    values: dict[str, str] = {}
    for q in qs:
        if given is not None:
            values[q["key"]] = check_answer(q, given.get(q["key"]), where)
            continue
        if "text" in q:
            values[q["key"]] = typer.prompt(q["prompt"], default=q["text"])
            continue
        typer.echo(q["prompt"])
        for key, label in q["choices"].items():
            typer.echo(f"  {key}: {label}")
        while q["key"] not in values:
            try:
                values[q["key"]] = check_answer(q, typer.prompt("answer"), "")
            except AdviseError as exc:
                typer.echo(str(exc))
    return values


def _print(advice: Any) -> None:
    typer.echo(f"\nrecommendation: {advice.summary}")
    for reason in advice.reasons:
        typer.echo(f"  - {reason}")
    for reason in advice.starter_reasons:
        typer.echo(f"  - {reason}")
