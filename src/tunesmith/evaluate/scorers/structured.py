"""Structured scorers: JSON extraction, classification labels, grounded QA with abstention.

Three kinds: ``json`` (structured extraction against a JSON Schema), ``label``
(classification into a fixed label set) and ``grounded`` (question answering where some
questions must be declined with a fixed abstention string). Every metric is a fraction in
[0, 1]; with zero rows the always-present metrics are 0.0.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for
from sklearn.metrics import f1_score

from tunesmith.evaluate.scorers.base import Confusion, EvalRow, RowScore, Scorer, TaskScore

OTHER = "(other)"
_FENCE = re.compile(r"^```(?:json)?[ \t]*\n?(.*?)\n?[ \t]*```$", re.DOTALL | re.IGNORECASE)
_TRAILING = re.compile(r"[.!\s]+$")
_QUOTES = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019"}


def _check_lengths(outputs: Sequence[str], golds: Sequence[str]) -> None:
    if len(outputs) != len(golds):
        raise ValueError(f"{len(outputs)} outputs but {len(golds)} golds; they must pair up")


def _frac(hits: int, total: int) -> float:
    return hits / total if total else 0.0


def _parse_object(text: str) -> dict[str, Any] | None:
    """The JSON object in ``text`` (one surrounding code fence removed), or None."""
    fenced = _FENCE.match(text)
    body = fenced.group(1).strip() if fenced else text
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _parse_gold(task: str, row: int, text: str) -> dict[str, Any]:
    """The gold JSON object; golds come from the task data, so a bad one is a programming error."""
    try:
        gold = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{task}: gold row {row} is not valid JSON: {exc}") from exc
    if isinstance(gold, dict):
        return gold
    raise ValueError(f"{task}: gold row {row} is not a JSON object")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _field_equal(pred: Any, gold: Any, tol: float) -> bool:
    if _is_number(pred) and _is_number(gold):
        return bool(pred == gold or abs(pred - gold) <= tol)
    if isinstance(pred, str) and isinstance(gold, str):
        return " ".join(pred.split()).casefold() == " ".join(gold.split()).casefold()
    return type(pred) is type(gold) and pred == gold


def _field_right(pred: dict[str, Any] | None, gold: dict[str, Any], name: str, tol: float) -> bool:
    if pred is None:
        return False
    if name not in gold:
        return name not in pred
    return name in pred and _field_equal(pred[name], gold[name], tol)


def score_json(
    task: str,
    outputs: Sequence[str],
    golds: Sequence[str],
    schema: dict[str, Any],
    tolerance: Mapping[str, float] | None = None,
) -> TaskScore:
    """Score JSON extraction outputs field by field against gold JSON objects.

    The output is stripped and one surrounding Markdown fence (```json or ```) removed.
    ``json_valid``: it parses to a JSON object. ``schema_compliance``: valid and accepted by
    ``schema`` (validator from its ``$schema``, default Draft 2020-12). ``field_<name>`` per
    schema property: the prediction has the key and its value equals the gold's -- numbers
    within ``tolerance[name]`` (default 0) absolute difference, strings after whitespace
    collapse + casefold, anything else by == with the same JSON type; a property absent from
    the gold is right when the prediction lacks it too. ``all_fields``: every property right
    (this is ``RowScore.correct``). Field rates are over all rows, invalid JSON counting as
    wrong. Headline: ``json_valid``. A gold that is not a JSON object raises ValueError.
    """
    _check_lengths(outputs, golds)
    tol = tolerance or {}
    cls = validator_for(schema, default=Draft202012Validator)
    cls.check_schema(schema)
    validator = cls(schema)
    props = list(schema.get("properties", {}))
    rows: list[RowScore] = []
    for i, (output, gold_text) in enumerate(zip(outputs, golds)):
        gold = _parse_gold(task, i, gold_text)
        text = output.strip()
        pred = _parse_object(text)
        error = best_match(validator.iter_errors(pred)) if pred is not None else None
        fields = {name: _field_right(pred, gold, name, tol.get(name, 0.0)) for name in props}
        rows.append(RowScore(
            correct=pred is not None and all(fields.values()),
            prediction=text if pred is None else json.dumps(pred, separators=(",", ":"), ensure_ascii=False),
            detail={"valid_json": pred is not None, "schema_ok": pred is not None and error is None,
                    "schema_error": error.message if error is not None else None, "fields": fields},
            headline=float(pred is not None),
        ))
    n = len(rows)
    metrics = {
        "json_valid": _frac(sum(r.detail["valid_json"] for r in rows), n),
        "schema_compliance": _frac(sum(r.detail["schema_ok"] for r in rows), n),
        **{f"field_{p}": _frac(sum(r.detail["fields"][p] for r in rows), n) for p in props},
        "all_fields": _frac(sum(r.correct for r in rows), n),
    }
    return TaskScore(task=task, scorer="json", n=n, metrics=metrics, main="json_valid", rows=rows)


def _normalise_label(text: str) -> str:
    """Strip, drop trailing '.', '!' and spaces, unwrap one pair of quotes, casefold."""
    s = _TRAILING.sub("", text.strip())
    if len(s) >= 2 and _QUOTES.get(s[0]) == s[-1]:
        s = _TRAILING.sub("", s[1:-1].strip())
    return s.casefold()


def score_label(task: str, outputs: Sequence[str], golds: Sequence[str], labels: Sequence[str]) -> TaskScore:
    """Score classification outputs against gold labels from a fixed label set.

    A prediction is stripped, loses trailing '.', '!' and whitespace and one pair of surrounding
    quotes, and is casefolded; labels match casefolded. A prediction outside the set becomes
    ``(other)``. ``accuracy``: prediction equals gold. ``macro_f1``: unweighted mean of per-label
    F1 over the whole label set (sklearn, zero_division=0: a label never predicted nor present
    scores 0; ``(other)`` is a miss for every label). ``valid_label_rate``: prediction in the
    set. Headline: ``macro_f1``. The confusion matrix has one row per label (given order) and
    the columns labels + ``(other)``. A gold outside the set raises ValueError.
    """
    _check_lengths(outputs, golds)
    canon = {label.casefold(): label for label in labels}
    if len(canon) != len(labels):
        raise ValueError(f"{task}: labels {list(labels)} repeat when casefolded")
    rows: list[RowScore] = []
    gold_labels: list[str] = []
    for i, (output, gold) in enumerate(zip(outputs, golds)):
        gold_label = canon.get(gold.strip().casefold())
        if gold_label is None:
            raise ValueError(f"{task}: gold row {i} {gold!r} is not one of the labels {list(labels)}")
        text = _normalise_label(output)
        pred = canon.get(text, OTHER)
        gold_labels.append(gold_label)
        rows.append(RowScore(correct=pred == gold_label, prediction=pred,
                             detail={"gold": gold_label, "normalised": text, "valid_label": pred != OTHER}))
    preds = [r.prediction for r in rows]
    columns = [*labels, OTHER]
    matrix = [[0] * len(columns) for _ in labels]
    for gold_label, pred in zip(gold_labels, preds):
        matrix[list(labels).index(gold_label)][columns.index(pred)] += 1
    n = len(rows)
    macro = f1_score(gold_labels, preds, labels=list(labels), average="macro", zero_division=0) if n else 0.0
    metrics = {
        "accuracy": _frac(sum(r.correct for r in rows), n),
        "macro_f1": float(macro),
        "valid_label_rate": _frac(sum(p != OTHER for p in preds), n),
    }
    return TaskScore(task=task, scorer="label", n=n, metrics=metrics, main="macro_f1", rows=rows,
                     confusion=Confusion(labels=list(labels), columns=columns, matrix=matrix))


def _normalise_answer(text: str) -> str:
    """Strip, collapse whitespace, casefold, drop trailing '.'."""
    return " ".join(text.split()).casefold().rstrip(".").rstrip()


def score_grounded(task: str, outputs: Sequence[str], golds: Sequence[str], abstention: str) -> TaskScore:
    """Score grounded QA where unanswerable questions must be declined with ``abstention``.

    Predictions, golds and ``abstention`` are stripped, whitespace-collapsed, casefolded and lose
    trailing '.'; a prediction abstains when it then equals the abstention. ``accuracy``: exact
    match over all rows (headline). Only when some gold is the abstention:
    ``abstention_accuracy`` = fraction of those rows that abstained. Only when some gold is an
    answer: ``false_abstention_rate`` = fraction of those rows that abstained, and
    ``answer_accuracy`` = exact match among them.
    """
    _check_lengths(outputs, golds)
    refusal = _normalise_answer(abstention)
    if not refusal:
        raise ValueError(f"{task}: the abstention string is empty")
    rows: list[RowScore] = []
    for output, gold in zip(outputs, golds):
        pred, want = _normalise_answer(output), _normalise_answer(gold)
        rows.append(RowScore(correct=pred == want, prediction=pred,
                             detail={"abstained": pred == refusal, "gold_abstention": want == refusal}))
    n = len(rows)
    unanswerable = [r for r in rows if r.detail["gold_abstention"]]
    answerable = [r for r in rows if not r.detail["gold_abstention"]]
    metrics = {"accuracy": _frac(sum(r.correct for r in rows), n)}
    if unanswerable:
        metrics["abstention_accuracy"] = _frac(sum(r.detail["abstained"] for r in unanswerable), len(unanswerable))
    if answerable:
        metrics["false_abstention_rate"] = _frac(sum(r.detail["abstained"] for r in answerable), len(answerable))
        metrics["answer_accuracy"] = _frac(sum(r.correct for r in answerable), len(answerable))
    return TaskScore(task=task, scorer="grounded", n=n, metrics=metrics, main="accuracy", rows=rows)



def _outputs_golds(rows: Sequence[EvalRow]) -> tuple[list[str], list[str]]:
    return [r.output for r in rows], [r.gold for r in rows]


class JsonScorer(Scorer):
    """``json``: see ``score_json``; format compliance is ``schema_compliance``."""

    name, main, format_metric = "json", "json_valid", "schema_compliance"

    def check_gold(self, gold: str) -> str | None:
        try:
            ok = isinstance(json.loads(gold), dict)
        except json.JSONDecodeError:
            ok = False
        return None if ok else f"the gold answer is not a JSON object (json scorer, task {self.spec.name!r})"

    def score(self, rows: Sequence[EvalRow]) -> TaskScore:
        result = score_json(self.spec.name, *_outputs_golds(rows), self.spec.json_schema, self.spec.tolerance)
        result.format = self.format_metric
        return result


class LabelScorer(Scorer):
    """``label``: see ``score_label``; the label set is ``labels`` or the golds seen; format
    compliance is ``valid_label_rate``."""

    name, main, format_metric = "label", "macro_f1", "valid_label_rate"
    headline_is_row_mean = False

    def check_gold(self, gold: str) -> str | None:
        labels = self.spec.labels
        if labels and gold.strip().casefold() not in {label.casefold() for label in labels}:
            return f"gold label {gold!r} is not one of {labels} (task {self.spec.name!r})"
        return None

    def prepare(self, rows: Sequence[EvalRow]) -> None:
        seen = {r.gold.strip().casefold(): r.gold.strip() for r in reversed(rows)}  # first spelling wins
        self.labels = list(self.spec.labels or sorted(seen.values()))

    def headline_of(self, scored: Sequence[RowScore]) -> float | None:
        """Macro-F1 of these rows over the task's whole label set, as ``score_label`` computes it."""
        if not scored:
            return None
        golds = [r.detail["gold"] for r in scored]
        return float(f1_score(golds, [r.prediction for r in scored], labels=self.labels, average="macro",
                              zero_division=0))

    def headline_of_resamples(self, scored: Sequence[RowScore], index: Any) -> Any:
        """Macro-F1 of each resample, counted with array operations: per label, F1 = 2tp / (2tp + fp + fn),
        0 where a label is neither gold nor answered (sklearn's ``zero_division=0``), averaged over the label
        set; equal to ``headline_of`` of each resample (``tests/test_evaluate_interval.py``)."""
        import numpy as np

        code = {label: k for k, label in enumerate(self.labels)}
        gold = np.array([code.get(r.detail["gold"], -1) for r in scored])[index]
        pred = np.array([code.get(r.prediction, -1) for r in scored])[index]
        f1 = np.zeros(index.shape[:-1])
        for k in range(len(self.labels)):
            is_gold, is_pred = gold == k, pred == k
            tp = (is_gold & is_pred).sum(-1)
            denominator = is_gold.sum(-1) + is_pred.sum(-1)  # 2tp + fp + fn
            f1 += np.divide(2 * tp, denominator, out=np.zeros(f1.shape), where=denominator > 0)
        return f1 / len(self.labels)

    def score_part(self, rows: Sequence[EvalRow]) -> TaskScore:
        """A category's metrics: macro-F1 over the labels that occur in it (as gold or answer); a
        label the category never holds nor gets would count as F1 0 and pull a perfect part to 1/3."""
        if not hasattr(self, "labels"):
            self.prepare(rows)
        whole = score_label(self.spec.name, *_outputs_golds(rows), self.labels)
        present = {r.detail["gold"] for r in whole.rows} | {r.prediction for r in whole.rows}
        part = score_label(self.spec.name, *_outputs_golds(rows), [x for x in self.labels if x in present])
        whole.metrics["macro_f1"] = part.metrics["macro_f1"]
        whole.format = self.format_metric
        return whole

    def score(self, rows: Sequence[EvalRow]) -> TaskScore:
        outputs, golds = _outputs_golds(rows)
        if not hasattr(self, "labels"):
            self.prepare(rows)
        result = score_label(self.spec.name, outputs, golds, self.labels)
        result.format = self.format_metric
        return result


class GroundedScorer(Scorer):
    """``grounded``: see ``score_grounded`` (refusal string: the task's ``abstention``)."""

    name, main = "grounded", "accuracy"

    def score(self, rows: Sequence[EvalRow]) -> TaskScore:
        return score_grounded(self.spec.name, *_outputs_golds(rows), self.spec.abstention)
