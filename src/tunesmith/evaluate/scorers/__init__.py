"""Scorers: compare a model's replies with gold answers. One interface (``Scorer.score(rows) ->
TaskScore``, see ``base.py``) and one table, ``SCORERS``, keyed by the ``scorer:`` name of an
eval task. To add one: a small ``Scorer`` subclass, one line here, its name in
``config/schema.py:ScorerName``, and tests with hand-computed metrics."""

from tunesmith.evaluate.scorers.base import Confusion, EvalRow, RowScore, ScoreContext, Scorer, TaskScore
from tunesmith.evaluate.scorers.health import health
from tunesmith.evaluate.scorers.judge import JudgeScorer
from tunesmith.evaluate.scorers.overlap import BleuScorer, ChrfScorer, RougeLScorer
from tunesmith.evaluate.scorers.structured import (
    OTHER, GroundedScorer, JsonScorer, LabelScorer, score_grounded, score_json, score_label,
)
from tunesmith.evaluate.scorers.text import (
    ContainsScorer, ExactMatchScorer, NumericScorer, RegexScorer, TokenF1Scorer, normalise, token_f1,
)

SCORERS: dict[str, type[Scorer]] = {
    "json": JsonScorer,
    "label": LabelScorer,
    "grounded": GroundedScorer,
    "exact_match": ExactMatchScorer,
    "token_f1": TokenF1Scorer,
    "contains": ContainsScorer,
    "regex": RegexScorer,
    "numeric": NumericScorer,
    "rouge_l": RougeLScorer,
    "bleu": BleuScorer,
    "chrf": ChrfScorer,
    "judge": JudgeScorer,
}

__all__ = [
    "OTHER", "SCORERS", "Confusion", "EvalRow", "RowScore", "ScoreContext", "Scorer", "TaskScore", "health",
    "normalise", "score_grounded", "score_json", "score_label", "token_f1",
]
