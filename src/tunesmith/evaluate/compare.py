"""``evaluate.compare(config, a, b)``: two models on the same eval tasks, judged pair by pair.

Both models are evaluated as ``evaluate.run`` does (same rows, same template and prompts), then
the judge compares their replies row by row in both orders (``judge/pairwise.py``). Written to
``eval/``: ``compare_<a>_vs_<b>.json`` (per task and overall: win/tie/loss with 95 % intervals,
agreement, position and length bias, failures) and ``pairwise_<a>_vs_<b>.jsonl`` (every verdict).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config import Config
from tunesmith.errors import ConfigError
from tunesmith.evaluate.run import EvalResult


@dataclass
class CompareResult:
    a: EvalResult
    b: EvalResult
    names: tuple[str, str]
    tasks: dict[str, dict[str, Any]]
    overall: dict[str, Any]
    files: list[Path] = field(default_factory=list)
    judge: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.names[0], "b": self.names[1], "a_model": str(self.a.model_dir),
                "b_model": str(self.b.model_dir), "overall": self.overall, "tasks": self.tasks, "judge": self.judge}


def label(target: str | Path) -> str:
    """A short file-name-safe label for a model path (``outputs/run/model`` -> ``run-model``)."""
    parts = [p for p in Path(str(target)).parts if p not in ("/", ".", "..")][-2:]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(parts)).strip("-") or "model"


def compare(config: Config, a: str | Path, b: str | Path, *, names: tuple[str, str] | None = None,
            out_dir: Path | None = None, evals: tuple[EvalResult, EvalResult] | None = None) -> CompareResult:
    """Evaluate ``a`` and ``b`` (or take ``evals``) and judge their replies pairwise (needs ``judge:``)."""
    from tunesmith.evaluate import output
    from tunesmith.evaluate.judge import Pair, fingerprint, judge_pairs, load_rubric, open_client, summarise
    from tunesmith.evaluate.run import run

    if config.judge is None:
        raise ConfigError("judge: --compare needs a `judge:` section (base_url, model) in the config")
    rubric = load_rubric(config.judge.rubric)  # a bad rubric fails before any generation
    out = out_dir or Path(config.output_dir) / "eval"
    na, nb = names or (label(a), label(b))
    if na == nb:
        na, nb = f"{na}-a", f"{nb}-b"
    ra, rb = evals or (run(config, a, name=na, out_dir=out), run(config, b, name=nb, out_dir=out))
    pairs = [Pair(task, ta.prompts[i], ta.golds[i], ta.outputs[i], rb.tasks[task].outputs[i],
                  ta.rows[i].source if ta.rows else "", ta.rows[i].category if ta.rows else None)
             for task, ta in ra.tasks.items() if task in rb.tasks and ta.rows
             for i in range(min(len(ta.outputs), len(rb.tasks[task].outputs)))]
    client = open_client(config.judge, fingerprint(rubric), out / "judge_cache.sqlite")
    try:
        verdicts = judge_pairs(client, rubric, pairs)
    finally:
        client.close()
    if verdicts and all(v.failed for v in verdicts):  # as the judge scorer: shares of nothing are no result
        from tunesmith.evaluate.judge import JudgeError

        first = next((e for v in verdicts for e in v.errors), "no verdict")
        raise JudgeError(f"judge {config.judge.base_url} (model {config.judge.model!r}): no valid pairwise verdict "
                         f"for any of the {len(verdicts)} pairs; first failure: {first}")
    judge = {"model": config.judge.model, "rubric": rubric.name, "rubric_fingerprint": fingerprint(rubric),
             "structured": config.judge.structured, "format_refused": client.format_refused}
    tasks = {task: summarise([v for v in verdicts if v.pair.task == task]) for task in dict.fromkeys(p.task for p in pairs)}
    result = CompareResult(ra, rb, (na, nb), tasks, summarise(verdicts), judge=judge)
    stem = f"{na}_vs_{nb}"
    summary_path = out / f"compare_{stem}.json"
    summary_path.write_text(json.dumps(result.to_dict(), indent=2), "utf-8")
    rows = output.write_jsonl(out / f"pairwise_{stem}.jsonl", [v.to_dict() for v in verdicts])
    result.files = [*ra.files, *rb.files, summary_path, rows]
    return result
