"""evaluate: score a model's generations on held-out tasks (``run(config) -> EvalResult``)."""

from tunesmith.evaluate.run import EvalResult, TaskResult, run
from tunesmith.evaluate.scorers import SCORERS, TaskScore

__all__ = ["SCORERS", "EvalResult", "TaskResult", "TaskScore", "run"]
