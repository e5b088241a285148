"""The scorer interface: ``Scorer(spec, context).score(rows) -> TaskScore``.

Every scorer is a small class registered in ``scorers/__init__.py:SCORERS`` under the name an
eval task's ``scorer:`` key uses. ``evaluate.run`` never looks at that name: it builds the
scorer from the table, asks it to vet each gold answer (``check_gold``) before any generation,
and scores rows. Metrics in ``TaskScore.metrics`` are fractions in [0, 1]; anything else (a
judge's 1-5 means, counts) goes in ``TaskScore.extra``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


@dataclass(frozen=True)
class EvalRow:
    """One scored row: the prompt (last user turn), gold answer, the model's reply, and how the
    generation ended (``"stop"`` on a stop token, ``"length"`` at ``max_new_tokens``)."""

    prompt: str
    gold: str
    output: str
    finish_reason: str = "stop"
    tokens: int = 0
    gold_tokens: int = 0
    category: str | None = None
    source: str = ""


@dataclass
class RowScore:
    """One row: whether it counts as right for the headline metric family, and why.

    ``value`` is the row's own score in [0, 1] where the scorer has one (token-F1, ROUGE-L, a
    judge's normalised score); None means 1.0/0.0 from ``correct`` (or, for a judge failure, no
    score at all: ``detail["failed"]`` says why). ``headline`` is the row's part in the task's
    headline metric where that metric is not ``score`` (the json scorer's ``json_valid``); the
    gate pairs these per row to tell a real drop from noise."""

    correct: bool
    prediction: str
    detail: dict[str, Any]
    value: float | None = None
    headline: float | None = None

    @property
    def headline_value(self) -> float | None:
        """This row's value for the headline metric (a row mean), or ``score`` when the scorer sets none."""
        return self.headline if self.headline is not None else self.score

    @property
    def score(self) -> float | None:
        if self.value is not None:
            return self.value
        return None if self.detail.get("failed") else float(self.correct)


@dataclass
class Confusion:
    """Counts of (gold label, predicted label); the last column holds predictions outside the set."""

    labels: list[str]
    columns: list[str]
    matrix: list[list[int]]


@dataclass
class TaskScore:
    """All metrics of one task, the name of its headline metric, and the per-row scores.

    ``format``: the metric that measures format compliance (the gate's format check), if the
    scorer has one. ``weak``: the metrics are weak signals (n-gram overlap). ``health``:
    generation-health metrics. ``categories``: the same metrics per row category."""

    task: str
    scorer: str
    n: int
    metrics: dict[str, float]
    main: str
    rows: list[RowScore]
    confusion: Confusion | None = None
    format: str | None = None
    weak: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    health: dict[str, float] = field(default_factory=dict)
    categories: dict[str, dict[str, Any]] = field(default_factory=dict)
    interval: Any = None  # evaluate.interval.Interval of the headline metric (set by evaluate.run)


@dataclass(frozen=True)
class ScoreContext:
    """What a scorer may need beyond its task: the judge settings and the eval folder (where the
    judge keeps its verdict cache unless ``judge.cache`` says otherwise)."""

    judge: Any = None  # config.schema.JudgeConfig
    out_dir: Path | None = None


class Scorer:
    """Base class: set ``name``; override ``score`` (and ``check_gold`` when golds have a shape)."""

    name: ClassVar[str] = ""
    main: ClassVar[str] = ""
    format_metric: ClassVar[str | None] = None
    weak: ClassVar[bool] = False
    headline_is_row_mean: ClassVar[bool] = True  # False: override ``headline_of`` (e.g. macro-F1)

    def __init__(self, spec: Any, context: ScoreContext | None = None) -> None:
        self.spec = spec
        self.context = context or ScoreContext()

    def check_gold(self, gold: str) -> str | None:
        """Why ``gold`` cannot be scored by this scorer (one line), or None when it can."""
        return None

    def prepare(self, rows: Sequence[EvalRow]) -> None:
        """Called once with all of a task's rows before any ``score`` (e.g. to fix a label set, so
        per-category scores use the same one)."""

    def score(self, rows: Sequence[EvalRow]) -> TaskScore:
        raise NotImplementedError

    def score_part(self, rows: Sequence[EvalRow]) -> TaskScore:
        """The metrics of a part of the task's rows (one category); by default as ``score``."""
        return self.score(rows)

    def headline_of(self, scored: Sequence[RowScore]) -> float | None:
        """The headline metric of these scored rows (any subset or resample of a task's rows): by
        default the mean of their ``headline_value``; the interval (``evaluate.interval``) uses it."""
        values = [r.headline_value for r in scored if r.headline_value is not None]
        return sum(values) / len(values) if values else None

    def headline_of_resamples(self, scored: Sequence[RowScore], index: Any) -> Any:
        """``headline_of`` of many resamples (the interval's bootstrap): ``index`` is an integer array
        (..., n) of row positions in ``scored``, one resample per last-axis slice; the figures as an array
        of the leading shape. By default ``headline_of`` once per resample; a scorer whose headline is
        not a row mean overrides it when that is slow (macro-F1)."""
        import numpy as np

        rows = index.reshape(-1, index.shape[-1])
        figures = [self.headline_of([scored[i] for i in row]) for row in rows]
        return np.array([np.nan if f is None else f for f in figures], dtype=float).reshape(index.shape[:-1])

    def task_score(self, rows: Sequence[EvalRow], metrics: dict[str, float], scored: list[RowScore],
                   **kwargs: Any) -> TaskScore:
        """A ``TaskScore`` of this scorer's kind (name, headline, format metric, weak flag filled in)."""
        return TaskScore(task=self.spec.name, scorer=self.name, n=len(rows), metrics=metrics,
                         main=kwargs.pop("main", self.main), rows=scored, format=self.format_metric,
                         weak=self.weak, **kwargs)


def frac(hits: float, total: int) -> float:
    return hits / total if total else 0.0


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
