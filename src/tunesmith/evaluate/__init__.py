"""evaluate: score a model's generations on held-out tasks (``run(config) -> EvalResult``), compare
two models with a judge (``compare``), and probe general capability (``probes.run``)."""

from tunesmith.evaluate.compare import CompareResult, compare
from tunesmith.evaluate.compare import label as compare_label
from tunesmith.evaluate.run import EvalResult, TaskResult, run, score_rows
from tunesmith.evaluate.scorers import SCORERS, EvalRow, TaskScore

__all__ = ["SCORERS", "CompareResult", "EvalResult", "EvalRow", "TaskResult", "TaskScore", "compare", "compare_label", "run",
           "score_rows"]
