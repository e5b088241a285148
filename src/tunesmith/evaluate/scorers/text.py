"""Short-answer scorers: exact match and token-F1 (SQuAD-style), contains, regex, numeric tolerance."""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

from tunesmith.evaluate.scorers.base import EvalRow, RowScore, Scorer, TaskScore, frac, mean

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)
# a sign only where it can be one: not the hyphen of "3-5" or "COVID-19"; U+2212 is a minus sign too
_SIGN = r"(?:(?<![\w.])[-+\u2212])?"
_NUMBER = re.compile(_SIGN + r"(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+)")


def normalise(text: str) -> str:
    """SQuAD's answer normalisation: lower-case, drop punctuation, drop articles (a, an, the),
    collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD token-F1 of two answers after ``normalise``: harmonic mean of the shared-token
    precision and recall (multiset overlap); two empty answers score 1, one empty answer 0."""
    pred, want = normalise(prediction).split(), normalise(gold).split()
    if not pred or not want:
        return float(pred == want)
    same = sum((Counter(pred) & Counter(want)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(want)
    return 2 * precision * recall / (precision + recall)


class ExactMatchScorer(Scorer):
    """``exact_match``: ``exact_match`` = the normalised reply equals the normalised gold
    (headline); ``token_f1`` = mean SQuAD token-F1."""

    name, main = "exact_match", "exact_match"

    def score(self, rows: Sequence[EvalRow]) -> TaskScore:
        scored = []
        for r in rows:
            f1 = token_f1(r.output, r.gold)
            exact = normalise(r.output) == normalise(r.gold)
            scored.append(RowScore(exact, normalise(r.output), {"token_f1": f1}, value=f1,
                                   headline=float(exact) if self.main == "exact_match" else f1))
        metrics = {"exact_match": frac(sum(s.correct for s in scored), len(rows)),
                   "token_f1": mean([s.value or 0.0 for s in scored])}
        return self.task_score(rows, metrics, scored)


class TokenF1Scorer(ExactMatchScorer):
    """``token_f1``: the same metrics as ``exact_match`` with token-F1 as the headline."""

    name, main = "token_f1", "token_f1"


class ContainsScorer(Scorer):
    """``contains``: the normalised gold appears in the normalised reply as whole words
    (``contains``, headline)."""

    name, main = "contains", "contains"

    def check_gold(self, gold: str) -> str | None:
        return None if normalise(gold) else "the gold answer is empty after normalisation (contains scorer)"

    def score(self, rows: Sequence[EvalRow]) -> TaskScore:
        scored = []
        for r in rows:
            hit = f" {normalise(r.gold)} " in f" {normalise(r.output)} "
            scored.append(RowScore(hit, r.output, {}))
        return self.task_score(rows, {"contains": frac(sum(s.correct for s in scored), len(rows))}, scored)


class RegexScorer(Scorer):
    """``regex``: ``re.search`` of the task's ``pattern`` -- or, without one, of each row's gold
    taken as a regular expression -- finds a match in the reply (``regex_match``, headline)."""

    name, main = "regex", "regex_match"

    def check_gold(self, gold: str) -> str | None:
        if self.spec.pattern is not None:
            return None
        try:
            re.compile(gold)
        except re.error as exc:
            return f"the gold answer is not a valid regular expression: {exc} (regex scorer)"
        return None

    def score(self, rows: Sequence[EvalRow]) -> TaskScore:
        fixed = re.compile(self.spec.pattern) if self.spec.pattern is not None else None
        scored = []
        for r in rows:
            match = (fixed or re.compile(r.gold)).search(r.output)
            scored.append(RowScore(match is not None, r.output, {"match": match.group(0) if match else None}))
        return self.task_score(rows, {"regex_match": frac(sum(s.correct for s in scored), len(rows))}, scored)


def last_number(text: str) -> float | None:
    """The last number written in ``text`` (``1,234.5``, ``-3``, ``\u22123``, ``2e-3``, ``.5``), or None; in
    ``3-5`` the last number is 5, not -5."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    value = float(found[-1].replace(",", "").replace("\u2212", "-"))
    return value if math.isfinite(value) else None


class NumericScorer(Scorer):
    """``numeric``: the last number in the reply is within ``abs_tolerance`` or
    ``rel_tolerance`` x |gold| of the gold number (``numeric_accuracy``, headline);
    ``parse_rate`` = replies containing a number (the format metric). ``extra.mean_abs_error``
    is over parsed replies."""

    name, main, format_metric = "numeric", "numeric_accuracy", "parse_rate"

    def check_gold(self, gold: str) -> str | None:
        try:
            float(gold.strip().replace(",", ""))
        except ValueError:
            return f"the gold answer {gold!r} is not a number (numeric scorer)"
        return None

    def score(self, rows: Sequence[EvalRow]) -> TaskScore:
        scored, errors = [], []
        for r in rows:
            want, got = float(r.gold.strip().replace(",", "")), last_number(r.output)
            allowed = max(self.spec.abs_tolerance, self.spec.rel_tolerance * abs(want))
            ok = got is not None and abs(got - want) <= allowed + 1e-12
            if got is not None:
                errors.append(abs(got - want))
            scored.append(RowScore(ok, "" if got is None else f"{got:g}", {"parsed": got is not None}))
        metrics = {"numeric_accuracy": frac(sum(s.correct for s in scored), len(rows)),
                   "parse_rate": frac(sum(s.detail["parsed"] for s in scored), len(rows))}
        return self.task_score(rows, metrics, scored, extra={"mean_abs_error": mean(errors) if errors else None})
