"""``evaluate.run(config)``: generate on each held-out task and score the replies.

Per task: read the rows (golds vetted by the task's scorer), drop or refuse rows found in the
training data (``contamination.py``), generate greedily in the training template, score with
the scorer from ``SCORERS`` (never by branching on its name), add generation health and the
per-category breakdown. Then lm-eval tasks (``harness.py``) and the forgetting probes
(``probes/``). Everything is written to the run's ``eval/`` folder (``output.py``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config import Config, EvalTaskSpec
from tunesmith.errors import ConfigError
from tunesmith.audit.contamination import ContaminationReport
from tunesmith.evaluate.scorers import SCORERS, EvalRow, ScoreContext, Scorer, TaskScore, health


@dataclass
class TaskResult:
    """One task: the score, and each row's prompt, gold and reply (``rows``: the full rows)."""

    spec: Any  # EvalTaskSpec | LmEvalTaskSpec
    score: TaskScore
    prompts: list[str]
    golds: list[str]
    outputs: list[str]
    rows: list[EvalRow] = field(default_factory=list)
    excluded: int = 0  # rows left out as contaminated


@dataclass
class EvalResult:
    name: str
    model_dir: Path
    tasks: dict[str, TaskResult]
    seconds: float
    generated_tokens: int
    files: list[Path] = field(default_factory=list)
    probes: Any = None  # probes.ProbeResult
    contamination: ContaminationReport | None = None
    cached_replies: int | None = None  # replies reused from the generation cache (None: eval_cache off)
    notes: list[str] = field(default_factory=list)  # prompting that differs from the config's (``_prompting_notes``)

    @property
    def tokens_per_s(self) -> float:
        """Generated reply tokens per second of generation (batched greedy, KV cache); 0 when replies
        came from the generation cache (the figure would not be a generation speed)."""
        return self.generated_tokens / self.seconds if self.seconds > 0 and not self.cached_replies else 0.0

    def main_metrics(self) -> dict[str, float]:
        """``{task: value of its headline metric}`` (tasks whose headline is missing are left out)."""
        return {name: t.score.metrics[t.score.main] for name, t in self.tasks.items() if t.score.main in t.score.metrics}


def run(config: Config, model: str | Path | None = None, *, name: str = "model", loaded: Any = None,
        out_dir: Path | None = None) -> EvalResult:
    """Score ``model`` (default: the run's ``model/``) on ``config.eval_tasks`` and the probes.

    Prompts are the test conversations without their last assistant turn, rendered as in training: a model
    tunesmith trained with the template saved beside it, any other with the run's; ``config.system_prompt``,
    else the trained one. Where that differs from the config, ``EvalResult.notes`` says so. Writes
    ``eval_<name>.json``, ``generations_<name>.jsonl`` (and probes/contamination files) to
    ``out_dir`` (default: ``<output_dir>/eval``).
    """
    from tunesmith import infer
    from tunesmith.audit import contamination
    from tunesmith.evaluate import output
    from tunesmith.evaluate.tasks import read_task
    from tunesmith.tokenize import load_tokenizer

    if not config.eval_tasks:
        raise ConfigError("eval_tasks: no held-out tasks to evaluate on")
    out = out_dir or Path(config.output_dir) / "eval"
    context = ScoreContext(judge=config.judge, out_dir=out)
    scorers = {spec.name: SCORERS[spec.scorer](spec, context) for spec in config.dataset_tasks}
    tests = {spec.name: read_task(spec, scorers[spec.name]) for spec in config.dataset_tasks}  # bad files fail first
    report = (contamination.check(config, {n: t.records for n, t in tests.items()})
              if config.contamination.check and tests else None)
    # a model tunesmith trained is prompted with the template saved beside it (as serve and chat do), every
    # other model (the base, a foreign one) with the run's: both are what training rendered
    tokenizer = load_tokenizer(config.base_model, config.chat_template, config.special_tokens)
    target = model or Path(config.output_dir) / "model"
    is_base = str(target) == config.base_model  # the base itself: not an adapter on top of it
    trained = {} if is_base else _trained_with(target)
    loaded = loaded or infer.load(target, base_model=None if is_base else config.base_model,
                                  tokenizer=None if trained else tokenizer)
    system = config.system_prompt if config.system_prompt is not None else loaded.system_prompt
    notes = _prompting_notes(config, loaded, trained, tokenizer.chat_template, system)
    t0 = time.perf_counter()
    tasks: dict[str, TaskResult] = {}
    for spec in config.eval_tasks:  # lm-eval first: a task name it does not know fails before long generations
        if not isinstance(spec, EvalTaskSpec):
            from tunesmith.evaluate import harness

            tasks.update(harness.run(spec, loaded))
    cache = _cache(config, loaded)
    generated_rows = {spec.name: _generate(spec, tests[spec.name], report, loaded, system, config.eval_batch_size,
                                           cache) for spec in config.dataset_tasks}
    output.write_generations(out / f"generations_{name}.jsonl", generated_rows)  # kept even if scoring fails
    for spec in config.dataset_tasks:
        rows, excluded = generated_rows[spec.name]
        tasks[spec.name] = TaskResult(spec, score_rows(scorers[spec.name], rows), [r.prompt for r in rows],
                                      [r.gold for r in rows], [r.output for r in rows], rows, excluded)
    probe_result = _probes(config, loaded, system, cache)
    generated = sum(r.tokens for t in tasks.values() for r in t.rows)
    result = EvalResult(name, loaded.path, tasks, time.perf_counter() - t0, generated, probes=probe_result,
                        contamination=report, cached_replies=cache.hits if cache is not None else None, notes=notes)
    if cache is not None:
        cache.close()
    result.files = output.write(result, out)
    return result


def _trained_with(target: str | Path) -> dict[str, Any]:
    """``tunesmith_model.json`` of a local model folder tunesmith saved (its template and system prompt are the
    trained ones), else {} (a hub id, a GGUF file or catalogue name, a folder of another tool)."""
    from tunesmith import infer
    from tunesmith.errors import TunesmithError

    if not Path(target).exists():
        return {}
    try:
        return infer.info(infer.resolve_model_dir(target))
    except TunesmithError:
        return {}


def _prompting_notes(config: Config, loaded: Any, trained: dict[str, Any], run_template: str | None,
                     system: str | None) -> list[str]:
    """Where the prompts differ from what the run's config would render: said, and kept in eval_<name>.json."""
    notes = []
    if trained and loaded.tokenizer.chat_template != run_template:
        notes.append(f"chat_template: {loaded.path} was trained with another chat template than the config's "
                     f"({config.chat_template}); it is prompted with its own, as serve and chat prompt it")
    if trained and "system_prompt" in trained and system != trained["system_prompt"]:
        notes.append(f"system_prompt: prompted with {system!r}; {loaded.path} was trained with "
                     f"{trained['system_prompt']!r}")
    return notes


def _cache(config: Config, loaded: Any) -> Any:
    """The model's ``GenerationCache`` under ``eval_cache: true`` (None when off or the model has no fingerprint)."""
    from tunesmith.infer.cache import for_model

    return for_model(loaded) if config.eval_cache else None


def _generate(spec: EvalTaskSpec, test: Any, report: ContaminationReport | None, loaded: Any, system: str | None,
              batch_size: int, cache: Any = None) -> tuple[list[EvalRow], int]:
    """The task's rows with the model's replies (rows found in the training data left out under
    ``contamination.action: exclude``), and how many were left out."""
    from tunesmith import infer
    from tunesmith.audit.contamination import keep
    from tunesmith.data.records import row_locations

    pairs = list(zip(test.records, test.categories))
    if report is not None:
        kept = {id(r) for r in keep(report, spec.name, test.records)}
        pairs = [(r, c) for r, c in pairs if id(r) in kept]
    if not pairs:
        raise ConfigError(f"eval_tasks[{spec.name}]: every row is also in the training data (see contamination.json)")
    records = [r for r, _ in pairs]
    prompts = [r.messages[:-1] for r in records]
    gens = infer.generate_details(loaded.model, loaded.tokenizer, prompts, eos_ids=loaded.eos_ids,
                                  system_prompt=system, max_new_tokens=spec.max_new_tokens, batch_size=batch_size,
                                  tools=[r.tools for r in records], cache=cache)
    tok = loaded.tokenizer
    where = row_locations([r.source for r in test.records])  # as the contamination report names them
    at = {id(r): w for r, w in zip(test.records, where)}
    rows = [EvalRow(prompt=p[-1].content, gold=r.messages[-1].content, output=g.text, finish_reason=g.finish_reason,
                    tokens=g.tokens, gold_tokens=len(tok(r.messages[-1].content, add_special_tokens=False)["input_ids"]),
                    category=category, source=at[id(r)])
            for p, g, (r, category) in zip(prompts, gens, pairs)]
    return rows, len(test.records) - len(records)


def score_rows(scorer: Scorer, rows: Sequence[EvalRow]) -> TaskScore:
    """Score ``rows`` with ``scorer``, add generation health, the headline's 95 % interval, and --
    when rows carry categories -- the same metrics per category."""
    from tunesmith.evaluate import interval

    scorer.prepare(rows)
    score = scorer.score(rows)
    score.health = health(rows)
    score.interval = interval.headline(scorer, score)
    names = sorted({r.category for r in rows if r.category is not None})
    if names:
        for name in [*names, None]:
            subset = [r for r in rows if r.category == name]
            if subset:
                part = scorer.score_part(subset)
                score.categories[name or "(none)"] = {"n": len(subset), "metrics": part.metrics,
                                                      "health": health(subset)}
    return score


def _probes(config: Config, loaded: Any, system: str | None, cache: Any = None) -> Any:
    if not config.probes.enabled:
        return None
    from tunesmith.evaluate import probes

    return probes.run(loaded, path=config.probes.path, system_prompt=system,
                      max_new_tokens=config.probes.max_new_tokens, batch_size=config.eval_batch_size, cache=cache)
