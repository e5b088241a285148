"""``tunesmith data synth SEEDS --teacher-url U --teacher-model M --out DIR [--mode paraphrase|generate] ...``."""

from __future__ import annotations

from pathlib import Path

import typer


def synth(
    seeds: str = typer.Argument(..., help="Chat rows of the slice to augment (any format tunesmith reads)."),
    out: Path = typer.Option(..., "--out", help="Folder for synth.jsonl, synth_rejected.jsonl, synth_manifest.json."),
    teacher_url: str = typer.Option(..., "--teacher-url", help="OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1)."),
    teacher_model: str = typer.Option(..., "--teacher-model", help="The teacher's model name."),
    mode: str = typer.Option("paraphrase", "--mode", help="paraphrase (rewrite instructions, keep answers) or "
                             "generate (new instruction + answer pairs)."),
    count: int = typer.Option(20, "--count", min=1, help="Rows to ask the teacher for."),
    temperature: float = typer.Option(0.8, "--temperature", min=0.0, max=2.0),
    against: list[str] = typer.Option([], "--against", help="Existing data the rows must not duplicate (repeatable)."),
    answer_schema: Path | None = typer.Option(None, "--answer-schema", help="JSON schema every answer must match."),
    judge_url: str | None = typer.Option(None, "--judge-url", help="Score rows with this judge (default rubric)."),
    judge_model: str | None = typer.Option(None, "--judge-model"),
    min_judge_score: float = typer.Option(4.0, "--min-judge-score"),
    api_key_env: str | None = typer.Option(None, "--api-key-env", help="Environment variable with the teacher's key."),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Teacher rows, filtered (unusable replies, duplicates of existing data, answers failing the schema, low judge
    scores; each drop with its reason), audited, each tagged meta.origin = synth:<mode>."""
    import json

    from tunesmith.config.schema import DatasetSpec, JudgeConfig
    from tunesmith.errors import ConfigError
    from tunesmith.flywheel.synth import SynthOptions
    from tunesmith.flywheel.synth import synth as stage

    schema = None
    if answer_schema is not None:
        try:
            schema = json.loads(answer_schema.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{answer_schema}: not a readable JSON schema ({exc})") from None
    if bool(judge_url) != bool(judge_model):
        raise ConfigError("--judge-url and --judge-model go together")
    judge = JudgeConfig(base_url=judge_url, model=judge_model) if judge_url and judge_model else None
    teacher = JudgeConfig(base_url=teacher_url, model=teacher_model, temperature=temperature, api_key_env=api_key_env)
    result = stage(SynthOptions(seeds=DatasetSpec(path=seeds), out=out, teacher=teacher, mode=mode, count=count,
                                against=tuple(DatasetSpec(path=p) for p in against), answer_schema=schema,
                                judge=judge, min_judge_score=min_judge_score, overwrite=overwrite))
    dropped = ", ".join(f"{k} {v}" for k, v in result.rejected.items()) or "none"
    typer.echo(f"{result.kept} synthetic rows kept; dropped: {dropped} (synth_rejected.jsonl)")
    typer.echo(f"synthetic data: {result.out / 'synth.jsonl'}")
