"""Generation health, measured on every task: did replies stop, or run on and loop?

- ``stop_rate``: share of replies that ended on a stop token (EOS / end of turn).
- ``max_tokens_rate``: share that ran into ``max_new_tokens`` instead.
- ``repeated_ngram_rate``: mean over replies of the share of repeated word 4-grams
  (1 - distinct / total 4-grams; 0 for replies under 4 words) -- "seq-rep-4".
- ``loop_rate``: share of replies whose repeated-4-gram share is at least ``LOOP_AT`` (0.5).
- ``mean_reply_tokens``, ``mean_gold_tokens`` and ``length_ratio`` (reply / gold; 0 without golds).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tunesmith.evaluate.scorers.base import EvalRow, frac, mean

NGRAM = 4
LOOP_AT = 0.5
_WORD = re.compile(r"\w+")


def repeated_ngram_share(text: str, n: int = NGRAM) -> float:
    """1 - distinct/total word n-grams of ``text`` (lower-cased ``\\w+`` words); 0 when it has none."""
    words = _WORD.findall(text.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def health(rows: Sequence[EvalRow]) -> dict[str, float]:
    """The generation-health metrics of ``rows`` (see the module docstring)."""
    n = len(rows)
    reps = [repeated_ngram_share(r.output) for r in rows]
    reply, gold = mean([float(r.tokens) for r in rows]), mean([float(r.gold_tokens) for r in rows])
    return {
        "stop_rate": frac(sum(r.finish_reason == "stop" for r in rows), n),
        "max_tokens_rate": frac(sum(r.finish_reason == "length" for r in rows), n),
        "repeated_ngram_rate": mean(reps),
        "loop_rate": frac(sum(x >= LOOP_AT for x in reps), n),
        "mean_reply_tokens": reply,
        "mean_gold_tokens": gold,
        "length_ratio": reply / gold if gold else 0.0,
    }
