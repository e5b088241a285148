"""N-gram overlap scorers (ROUGE-L with rouge-score, BLEU and chrF with sacrebleu).

They are reported as weak signals: overlap with one reference rewards copying its wording and
punishes a correct answer phrased differently. Use them to spot drift, not to rank models.
"""

from __future__ import annotations

from collections.abc import Sequence

from tunesmith.evaluate.scorers.base import EvalRow, RowScore, Scorer, TaskScore, mean


class RougeLScorer(Scorer):
    """``rouge_l``: mean ROUGE-L F-measure (longest common word subsequence; rouge-score's
    tokenizer: lower-case alphanumeric words, no stemming) of reply vs gold, per row."""

    name, main, weak = "rouge_l", "rouge_l", True

    def score(self, rows: Sequence[EvalRow]) -> TaskScore:
        from rouge_score.rouge_scorer import RougeScorer

        rouge = RougeScorer(["rougeL"], use_stemmer=False)
        values = [rouge.score(r.gold, r.output)["rougeL"].fmeasure for r in rows]
        scored = [RowScore(v == 1.0, r.output, {}, value=v) for r, v in zip(rows, values)]
        return self.task_score(rows, {"rouge_l": mean(values)}, scored)


class BleuScorer(Scorer):
    """``bleu``: sacrebleu's corpus BLEU (13a tokenizer, exponential smoothing) and corpus chrF
    (character 6-grams, beta 2), both / 100; each row's value is its sentence score of the
    headline's kind (sentence BLEU, or sentence chrF for ``chrf``) / 100. The headline is
    corpus-level, not a mean of those: ``headline_of`` has no figure to resample."""

    name, main, weak = "bleu", "bleu", True
    headline_is_row_mean = False

    def headline_of(self, scored: Sequence[RowScore]) -> float | None:
        return None  # a corpus score: no row figure reproduces it (so no interval)

    def score(self, rows: Sequence[EvalRow]) -> TaskScore:
        import sacrebleu

        outputs, golds = [r.output for r in rows], [r.gold for r in rows]
        if not rows:
            return self.task_score(rows, {"bleu": 0.0, "chrf": 0.0}, [])
        metrics = {"bleu": sacrebleu.corpus_bleu(outputs, [golds]).score / 100,
                   "chrf": sacrebleu.corpus_chrf(outputs, [golds]).score / 100}
        sentence = sacrebleu.sentence_chrf if self.main == "chrf" else sacrebleu.sentence_bleu
        values = [sentence(o, [g]).score / 100 for o, g in zip(outputs, golds)]
        scored = [RowScore(o.strip() == g.strip(), o, {}, value=v) for o, g, v in zip(outputs, golds, values)]
        return self.task_score(rows, metrics, scored)


class ChrfScorer(BleuScorer):
    """``chrf``: the same metrics as ``bleu`` with chrF as the headline."""

    name, main = "chrf", "chrf"
