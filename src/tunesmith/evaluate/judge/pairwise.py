"""Pairwise comparison: which of two models answered each prompt better, with position bias removed.

Every pair is judged twice, A shown first and then B shown first. The row's result is the
winner both times agree on; verdicts that disagree (the judge followed the position, not the
content) count as a tie. Win, tie and loss shares (from A's side) come with a 95 % Wilson
interval. Position bias: of the single verdicts that named a winner, the share that picked the
reply shown first (0.5 = none). Length bias: of those whose replies differ in length, the share
that picked the longer one. A row whose verdicts failed is counted and left out of the shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tunesmith.config.schema import Rubric
from tunesmith.evaluate.interval import wilson
from tunesmith.evaluate.judge.client import JudgeClient
from tunesmith.evaluate.judge.rubric import pairwise_messages
from tunesmith.evaluate.judge.verdict import pairwise_format, parse_pairwise


@dataclass(frozen=True)
class Pair:
    """One prompt and both models' replies."""

    task: str
    prompt: str
    reference: str | None
    a: str
    b: str
    source: str = ""
    category: str | None = None


@dataclass
class PairVerdict:
    """Both verdicts of one pair ("a", "b" or "tie" each; None when that one failed) and the result."""

    pair: Pair
    a_first: str | None
    b_first: str | None
    errors: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.a_first is None or self.b_first is None

    @property
    def result(self) -> str | None:
        """"a", "b" or "tie" (disagreeing verdicts are a tie); None when a verdict failed."""
        if self.failed:
            return None
        return self.a_first if self.a_first == self.b_first else "tie"

    def to_dict(self) -> dict[str, Any]:
        p = self.pair
        return {"task": p.task, "source": p.source, "category": p.category, "prompt": p.prompt, "reference": p.reference,
                "a": p.a, "b": p.b, "a_first": self.a_first, "b_first": self.b_first, "result": self.result,
                "errors": self.errors}


def judge_pairs(client: JudgeClient, rubric: Rubric, pairs: Sequence[Pair]) -> list[PairVerdict]:
    """Ask the judge about every pair in both orders."""
    requests = []
    for p in pairs:
        requests.append(pairwise_messages(rubric, p.prompt, p.a, p.b, p.reference))
        requests.append(pairwise_messages(rubric, p.prompt, p.b, p.a, p.reference))
    outcomes = client.ask_many(requests, parse_pairwise, pairwise_format())
    out = []
    for k, p in enumerate(pairs):
        first, second = outcomes[2 * k], outcomes[2 * k + 1]
        a_first = None if first.failed else {"1": "a", "2": "b", "tie": "tie"}[first.value]
        b_first = None if second.failed else {"1": "b", "2": "a", "tie": "tie"}[second.value]
        out.append(PairVerdict(p, a_first, b_first, [o.error for o in (first, second) if o.error]))
    return out


def summarise(verdicts: Sequence[PairVerdict]) -> dict[str, Any]:
    """Win/tie/loss counts and shares with 95 % Wilson intervals (A's side), agreement of the two
    orders, position bias and length bias (see the module docstring)."""
    decided = [v for v in verdicts if not v.failed]
    n = len(decided)
    counts = {k: sum(v.result == key for v in decided) for k, key in (("wins", "a"), ("ties", "tie"), ("losses", "b"))}
    shares = {k: {"share": counts[k] / n if n else 0.0, "ci95": list(wilson(counts[k], n))} for k in counts}
    first_won = named = longer_won = differ = 0
    for v in decided:
        for winner, first in ((v.a_first, "a"), (v.b_first, "b")):
            if winner == "tie":
                continue
            named += 1
            first_won += winner == first
            la, lb = len(v.pair.a), len(v.pair.b)
            if la != lb:
                differ += 1
                longer_won += winner == ("a" if la > lb else "b")
    return {
        "n": len(verdicts), "judged": n, "failed": len(verdicts) - n, **counts, "shares": shares,
        "agreement": sum(v.a_first == v.b_first for v in decided) / n if n else 0.0,
        "position_bias": {"first_wins": first_won, "verdicts": named, "share": first_won / named if named else None},
        "length_bias": {"longer_wins": longer_won, "verdicts": differ, "share": longer_won / differ if differ else None},
    }
