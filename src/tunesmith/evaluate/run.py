"""``evaluate.run(config)``: generate on each held-out task and score the replies."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config import Config, EvalTaskSpec
from tunesmith.data.records import Record
from tunesmith.errors import ConfigError, DataError, RowError
from tunesmith.evaluate.scorers import SCORERS, TaskScore


@dataclass
class TaskResult:
    """One task: the score, and each row's prompt, gold and reply."""

    spec: EvalTaskSpec
    score: TaskScore
    prompts: list[str]
    golds: list[str]
    outputs: list[str]


@dataclass
class EvalResult:
    name: str
    model_dir: Path
    tasks: dict[str, TaskResult]
    seconds: float
    generated_tokens: int
    files: list[Path] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        """Generated reply tokens per second of generation (batched greedy, KV cache)."""
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0

    def main_metrics(self) -> dict[str, float]:
        """``{task: value of its headline metric}``."""
        return {name: t.score.metrics[t.score.main] for name, t in self.tasks.items()}


def run(config: Config, model: str | Path | None = None, *, name: str = "model", loaded: Any = None,
        out_dir: Path | None = None) -> EvalResult:
    """Score ``model`` (default: the run's ``model/``) on ``config.eval_tasks``.

    Prompts are the test conversations without their last assistant turn, rendered with the
    model's own chat template and ``config.system_prompt``, as in training. Writes
    ``eval_<name>.json`` (metrics) and ``generations_<name>.jsonl`` to ``out_dir`` (default: the run).
    """
    from tunesmith import infer
    from tunesmith.tokenize import load_tokenizer

    if not config.eval_tasks:
        raise ConfigError("eval_tasks: no held-out tasks to evaluate on")
    tests = {spec.name: _test_records(spec) for spec in config.eval_tasks}  # bad files fail before any generation
    # the run's tokenizer and template, so every model is prompted exactly as training rendered
    tokenizer = load_tokenizer(config.base_model, config.chat_template, config.special_tokens)
    target = model or Path(config.output_dir) / "model"
    is_base = str(target) == config.base_model  # the base itself: not an adapter on top of it
    loaded = loaded or infer.load(target, base_model=None if is_base else config.base_model, tokenizer=tokenizer)
    system = config.system_prompt if config.system_prompt is not None else loaded.system_prompt
    t0 = time.perf_counter()
    tasks: dict[str, TaskResult] = {}
    generated = 0
    for spec in config.eval_tasks:
        records = tests[spec.name]
        prompts = [r.messages[:-1] for r in records]
        golds = [r.messages[-1].content for r in records]
        outputs = infer.generate(loaded.model, loaded.tokenizer, prompts, eos_ids=loaded.eos_ids, system_prompt=system,
                                 max_new_tokens=spec.max_new_tokens, batch_size=config.eval_batch_size,
                                 tools=[r.tools for r in records])
        generated += sum(len(loaded.tokenizer(o, add_special_tokens=False)["input_ids"]) for o in outputs)
        tasks[spec.name] = TaskResult(spec, _score(spec, outputs, golds), [p[-1].content for p in prompts],
                                      golds, outputs)
    result = EvalResult(name, loaded.path, tasks, time.perf_counter() - t0, generated)
    result.files = write(result, out_dir or Path(config.output_dir))
    return result


def _test_records(spec: EvalTaskSpec) -> list[Record]:
    """The task's rows; each must end with an assistant answer the scorer can read."""
    from tunesmith.data import ingest

    records = ingest([spec.dataset()], method="sft").records
    if not records:
        raise ConfigError(f"eval_tasks[{spec.name}].path: {spec.path} has no rows")
    errors = [error for record in records if (error := _gold_error(spec, record)) is not None]
    if errors:
        raise DataError(errors, total_rows=len(records))
    return records


def _gold_error(spec: EvalTaskSpec, record: Record) -> RowError | None:
    def bad(message: str) -> RowError:
        return RowError(record.source.file, record.source.row, "messages", message, record.source.line)

    if record.kind != "sft" or not record.messages or record.messages[-1].role != "assistant":
        return bad(f"must end with the assistant's gold answer (eval task {spec.name!r})")
    gold = record.messages[-1].content
    if spec.scorer == "json":
        try:
            ok = isinstance(json.loads(gold), dict)
        except json.JSONDecodeError:
            ok = False
        return None if ok else bad(f"the gold answer is not a JSON object (json scorer, task {spec.name!r})")
    if spec.scorer == "label" and spec.labels and gold.strip().casefold() not in {l.casefold() for l in spec.labels}:
        return bad(f"gold label {gold!r} is not one of {spec.labels} (task {spec.name!r})")
    return None


def _score(spec: EvalTaskSpec, outputs: list[str], golds: list[str]) -> TaskScore:
    scorer = SCORERS[spec.scorer]
    if spec.scorer == "json":
        return scorer(spec.name, outputs, golds, spec.json_schema, spec.tolerance)
    if spec.scorer == "label":
        return scorer(spec.name, outputs, golds, spec.labels or sorted(set(golds)))
    return scorer(spec.name, outputs, golds, spec.abstention)


def write(result: EvalResult, out_dir: Path) -> list[Path]:
    """``eval_<name>.json`` with every metric, ``generations_<name>.jsonl`` with every reply."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {
        "model": str(result.model_dir), "seconds": round(result.seconds, 2), "generated_tokens": result.generated_tokens,
        "tokens_per_s": round(result.tokens_per_s, 1),
        "tasks": {name: {"scorer": t.score.scorer, "n": t.score.n, "main": t.score.main, "metrics": t.score.metrics,
                         "confusion": vars(t.score.confusion) if t.score.confusion else None}
                  for name, t in result.tasks.items()},
    }
    summary = out_dir / f"eval_{result.name}.json"
    summary.write_text(json.dumps(metrics, indent=2), "utf-8")
    gens = out_dir / f"generations_{result.name}.jsonl"
    with gens.open("w", encoding="utf-8") as fh:
        for name, t in result.tasks.items():
            for prompt, gold, out, row in zip(t.prompts, t.golds, t.outputs, t.score.rows):
                fh.write(json.dumps({"task": name, "prompt": prompt, "gold": gold, "output": out,
                                     "correct": row.correct}) + "\n")
    return [summary, gens]
