"""gate: decide whether a candidate model may replace a baseline, from their evaluation results
(``run(candidate, baseline, GateConfig) -> GateResult``); the thresholds are a ``GateConfig``."""

from tunesmith.gate.checks import CHECKS, Line
from tunesmith.gate.run import GateResult, load_summary, resolve, run

__all__ = ["CHECKS", "GateResult", "Line", "load_summary", "resolve", "run"]
