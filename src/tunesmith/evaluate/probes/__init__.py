"""Forgetting probes: ``run(loaded) -> ProbeResult`` on any loaded model, ``compare(base, candidate)``
flags categories that dropped. The item set is data (``general.jsonl``); the checks are in ``checks.py``."""

from tunesmith.evaluate.probes.checks import CHECKS, refuses
from tunesmith.evaluate.probes.core import Probe, ProbeResult, ProbeRow, compare, default_path, load, rows_jsonl, run

__all__ = ["CHECKS", "Probe", "ProbeResult", "ProbeRow", "compare", "default_path", "load", "refuses", "rows_jsonl",
           "run"]
