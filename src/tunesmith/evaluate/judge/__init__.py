"""LLM-as-judge over any OpenAI-compatible endpoint: rubric grading (``scorers/judge.py`` uses it),
pairwise comparison, the verdict cache, and reply parsing."""

from tunesmith.evaluate.judge.client import JudgeClient, JudgeError, Outcome, open_client
from tunesmith.evaluate.judge.pairwise import Pair, PairVerdict, judge_pairs, summarise, wilson
from tunesmith.evaluate.judge.rubric import fingerprint, load_rubric, pairwise_messages, rubric_messages
from tunesmith.evaluate.judge.verdict import (
    VerdictError, pairwise_format, parse_pairwise, parse_rubric, rubric_format,
)

__all__ = [
    "JudgeClient", "JudgeError", "Outcome", "Pair", "PairVerdict", "VerdictError", "fingerprint", "judge_pairs",
    "load_rubric", "open_client", "pairwise_format", "pairwise_messages", "parse_pairwise", "parse_rubric",
    "rubric_format", "rubric_messages", "summarise", "wilson",
]
