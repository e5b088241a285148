"""lm-evaluation-harness tasks (``eval_tasks: - lm_eval: {tasks: [...]}``) on the model being evaluated.

The loaded model and tokenizer are handed to lm-eval's ``HFLM`` as objects (nothing is loaded
twice, nothing is downloaded by tunesmith). Each lm-eval task becomes a task result named
``<entry name>:<task>`` whose metrics are lm-eval's metrics that are fractions (acc, acc_norm,
exact_match, ...); the others (perplexity, stderr) go in ``extra``. Every sample is kept as a
row. Needs the optional extra: ``pip install 'tunesmith[lm-eval]'``.
"""

from __future__ import annotations

import math
from typing import Any

from tunesmith.config.schema import LmEvalTaskSpec
from tunesmith.errors import ConfigError
from tunesmith.evaluate.scorers.base import EvalRow, RowScore, TaskScore


def _lm_eval() -> Any:
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError as exc:
        raise ConfigError(f"eval_tasks: lm_eval entries need lm-eval ({exc.msg}): pip install 'tunesmith[lm-eval]'") from None
    return lm_eval, HFLM, TaskManager


def run(spec: LmEvalTaskSpec, loaded: Any) -> dict[str, Any]:
    """``{"<name>:<task>": TaskResult}`` for every lm-eval task of ``spec``."""
    from tunesmith.evaluate.run import TaskResult

    lm_eval, hflm, task_manager = _lm_eval()
    options = spec.lm_eval
    manager = _manager(task_manager, options.include_path, options.tasks)
    unknown = [t for t in options.tasks if t not in manager.all_tasks]
    if unknown:
        where = f" or under include_path {options.include_path}" if options.include_path else ""
        raise ConfigError(f"eval_tasks[{spec.name}].lm_eval.tasks: unknown lm-eval task(s) {', '.join(unknown)} "
                          f"(not bundled with lm-eval{where})")
    model = hflm(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=options.batch_size, device="cpu",
                 dtype="float32")
    limit = int(options.limit) if options.limit is not None and options.limit >= 1 else options.limit
    out = lm_eval.simple_evaluate(model=model, tasks=list(options.tasks), num_fewshot=options.num_fewshot,
                                  limit=limit, task_manager=manager, log_samples=True, bootstrap_iters=0,
                                  random_seed=0, numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)
    results = {}
    for task, values in out["results"].items():
        name = f"{spec.name}:{task}"
        samples = out.get("samples", {}).get(task, [])
        score = _score(name, values, out.get("higher_is_better", {}).get(task, {}), samples)
        rows = [_row(sample) for sample in _of_filter(samples, score.extra["filter"])]
        results[name] = TaskResult(spec, score, [r.prompt for r in rows], [r.gold for r in rows],
                                   [r.output for r in rows], rows)
    return results


def _manager(task_manager: Any, include_path: str | None, tasks: list[str]) -> Any:
    """lm-eval's task index: only ``include_path`` when it defines every task (indexing the ~15,000
    bundled task files takes a minute), else the bundled tasks too."""
    if include_path:
        local = task_manager(include_path=include_path, include_defaults=False)
        if all(t in local.all_tasks for t in tasks):
            return local
        return task_manager(include_path=include_path)
    return task_manager()


def _of_filter(samples: list[dict[str, Any]], name: str | None) -> list[dict[str, Any]]:
    """The samples of one filter: lm-eval logs each document once per filter (gsm8k: strict-match and
    flexible-extract), so taking them all doubled the rows."""
    return [s for s in samples if name is None or s.get("filter") in (None, name)]


def _score(name: str, values: dict[str, Any], better: dict[str, bool], samples: list[dict[str, Any]]) -> TaskScore:
    """The fraction metrics of the first filter under their own names (the headline is the first),
    other filters' as ``metric (filter)``; the rows are the first filter's samples."""
    metrics, other, first = {}, {}, None
    for key, value in values.items():
        metric, _, filter_ = key.partition(",")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            continue
        if not metric.endswith("_stderr") and 0.0 <= value <= 1.0 and better.get(metric, True):
            first = filter_ if first is None else first
            metrics[metric if filter_ == first else f"{metric} ({filter_})"] = float(value)
        else:
            other[key] = float(value)
    main = next(iter(metrics), "")
    samples = _of_filter(samples, first or None)
    rows = []
    for sample in samples:
        value = sample.get(main)
        ok = isinstance(value, (int, float)) and float(value) >= 1.0
        rows.append(RowScore(ok, _row(sample).output, {"doc_id": sample.get("doc_id"),
                                                      "resps": sample.get("filtered_resps")},
                             value=float(value) if isinstance(value, (int, float)) else None))
    return TaskScore(task=name, scorer="lm_eval", n=len(samples), metrics=metrics, main=main, rows=rows,
                     extra={"other": other, "higher_is_better": better, "filter": first or None})


def _first(value: Any) -> Any:
    while isinstance(value, (list, tuple)) and value:
        value = value[0]
    return value


def _row(sample: dict[str, Any]) -> EvalRow:
    """The sample as a row. Multiple choice (one (loglikelihood, greedy) per choice): the reply is
    the most likely choice and the gold the target choice's text; generation: the text itself."""
    arguments = sample.get("arguments") or [[""]]
    resps, target = sample.get("filtered_resps") or [], sample.get("target", "")
    choices = [a[1] for a in arguments if isinstance(a, (list, tuple)) and len(a) > 1 and isinstance(a[1], str)]
    scored = [_first(r) for r in resps]
    if choices and len(choices) == len(scored) and all(isinstance(x, (int, float)) for x in scored):
        output = choices[max(range(len(scored)), key=lambda i: scored[i])].strip()
        gold = choices[target].strip() if isinstance(target, int) and 0 <= target < len(choices) else str(target)
    else:
        output, gold = str(_first(resps)), str(target)
    return EvalRow(prompt=str(_first(arguments)), gold=gold, output=output, source=f"doc {sample.get('doc_id')}")
