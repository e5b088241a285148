"""``judge``: an LLM grades every reply on the rubric (criteria on a scale, yes/no flags).

Metrics (fractions, over the rows the judge gave a valid verdict for -- a failed verdict is
counted, never scored): ``judge_<criterion>`` = mean of (score - lowest) / (highest - lowest);
``judge_score`` = the mean of those (headline); ``<flag>_rate`` = share of verdicts with the flag
set (e.g. ``hallucination_rate``); ``judge_pass_rate`` = share with every criterion >= the
rubric's ``pass_min`` and no flag; ``judge_failure_rate`` = failed rows / all rows.
``extra`` holds the raw 1-5 means, the score distribution, counts and the first failures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError
from tunesmith.evaluate.scorers.base import EvalRow, RowScore, Scorer, TaskScore, frac, mean


class JudgeScorer(Scorer):
    name, main = "judge", "judge_score"

    def prepare(self, rows: Sequence[EvalRow]) -> None:
        """Ask the judge about every row once (cached on disk); ``score`` only looks verdicts up."""
        from tunesmith.evaluate.judge.client import JudgeError, open_client
        from tunesmith.evaluate.judge.rubric import fingerprint, load_rubric, rubric_messages
        from tunesmith.evaluate.judge.verdict import parse_rubric, rubric_format

        cfg = self.context.judge
        if cfg is None:
            raise ConfigError(f"eval_tasks[{self.spec.name}].scorer: judge needs a `judge:` section in the config")
        self.rubric = load_rubric(cfg.rubric)
        self.rubric_id = fingerprint(self.rubric)
        default_cache = (self.context.out_dir or Path(".")) / "judge_cache.sqlite"
        client = open_client(cfg, self.rubric_id, default_cache)
        try:
            requests = [rubric_messages(self.rubric, r.prompt, r.output, r.gold) for r in rows]
            outcomes = client.ask_many(requests, lambda text: parse_rubric(text, self.rubric),
                                       rubric_format(self.rubric))
        finally:
            client.close()
        self.format_refused = client.format_refused
        self.verdicts = {_key(r): o for r, o in zip(rows, outcomes)}
        if rows and all(o.failed for o in outcomes):
            raise JudgeError(f"judge {cfg.base_url} (model {cfg.model!r}): no valid verdict for any of the "
                             f"{len(rows)} rows of task {self.spec.name!r}; first failure: {outcomes[0].error}")

    def score(self, rows: Sequence[EvalRow]) -> TaskScore:
        if not hasattr(self, "verdicts"):
            self.prepare(rows)
        scored = [self._row(r) for r in rows]
        judged = [s for s in scored if not s.detail["failed"]]
        metrics = self._metrics(judged, len(rows))
        failures = [f"{r.source or i}: {s.detail['failed']}" for i, (r, s) in enumerate(zip(rows, scored))
                    if s.detail["failed"]]
        extra = {"judged": len(judged), "failed": len(failures), "failures": failures[:5],
                 "model": self.context.judge.model, "rubric": self.rubric.name,
                 "rubric_fingerprint": self.rubric_id,
                 "structured": sum(bool(s.detail["structured"]) for s in scored),
                 "format_refused": getattr(self, "format_refused", None),
                 "means": {c.name: mean([s.detail["verdict"]["scores"][c.name] for s in judged])
                           for c in self.rubric.criteria} if judged else {},
                 "distribution": {c.name: dict(sorted(Counter(s.detail["verdict"]["scores"][c.name]
                                                              for s in judged).items()))
                                  for c in self.rubric.criteria}}
        return self.task_score(rows, metrics, scored, extra=extra)

    def _row(self, row: EvalRow) -> RowScore:
        outcome = self.verdicts[_key(row)]
        detail: dict[str, Any] = {"verdict": outcome.value, "failed": outcome.error, "attempts": outcome.attempts,
                                  "cached": outcome.cached, "structured": outcome.structured}
        if outcome.failed:
            return RowScore(False, row.output, detail)
        verdict = outcome.value
        parts = [_unit(verdict["scores"][c.name], c.scale) for c in self.rubric.criteria]
        passed = (all(verdict["scores"][c.name] >= self.rubric.pass_min for c in self.rubric.criteria)
                  and not any(verdict["flags"].values()))
        return RowScore(passed, row.output, detail, value=mean(parts))

    def _metrics(self, judged: list[RowScore], n: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if judged:
            metrics["judge_score"] = mean([s.value or 0.0 for s in judged])
            for c in self.rubric.criteria:
                metrics[f"judge_{c.name}"] = mean([_unit(s.detail["verdict"]["scores"][c.name], c.scale) for s in judged])
            for f in self.rubric.flags:
                metrics[f"{f.name}_rate"] = frac(sum(s.detail["verdict"]["flags"][f.name] for s in judged), len(judged))
            metrics["judge_pass_rate"] = frac(sum(s.correct for s in judged), len(judged))
        metrics["judge_failure_rate"] = frac(n - len(judged), n)
        return metrics


def _unit(value: int, scale: tuple[int, int]) -> float:
    low, high = scale
    return (value - low) / (high - low)


def _key(row: EvalRow) -> tuple[str, str, str]:
    return row.prompt, row.gold, row.output
