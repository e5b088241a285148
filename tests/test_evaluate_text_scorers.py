"""The short-answer, overlap and health scorers, with hand-computed expected values."""

from __future__ import annotations

import pytest

from tunesmith.config.schema import EvalTaskSpec
from tunesmith.evaluate import score_rows
from tunesmith.evaluate.scorers import SCORERS, EvalRow, health, normalise, token_f1
from tunesmith.evaluate.scorers.health import repeated_ngram_share
from tunesmith.evaluate.scorers.text import last_number


def _spec(scorer: str, **kw: object) -> EvalTaskSpec:
    return EvalTaskSpec(name="t", path="t.jsonl", scorer=scorer, **kw)


def _rows(pairs: list[tuple[str, str]], **kw: object) -> list[EvalRow]:
    return [EvalRow("q", gold, out, **kw) for out, gold in pairs]


def test_squad_normalisation_and_token_f1() -> None:
    assert normalise("  The  Eiffel-Tower, in PARIS! ") == "eiffeltower in paris"
    assert normalise("an apple a day") == "apple day"
    # pred tokens [paris, france], gold [paris]: P = 1/2, R = 1/1, F1 = 2/3
    assert token_f1("Paris, France", "the Paris") == pytest.approx(2 / 3)
    # pred [cat, cat, sat], gold [cat, sat, down]: overlap = min counts = cat 1 + sat 1 = 2; P = R = 2/3
    assert token_f1("cat cat sat", "cat sat down") == pytest.approx(2 / 3)
    assert token_f1("", "") == 1.0 and token_f1("the", "paris") == 0.0 and token_f1("x", "y") == 0.0


def test_exact_match_and_token_f1_scorers() -> None:
    rows = _rows([("The Paris.", "paris"), ("Paris, France", "Paris"), ("Lyon", "Paris")])
    em = SCORERS["exact_match"](_spec("exact_match")).score(rows)
    # exact: row 0 only -> 1/3; F1: 1, 2/3, 0 -> mean 5/9
    assert em.metrics == pytest.approx({"exact_match": 1 / 3, "token_f1": 5 / 9})
    assert em.main == "exact_match" and [r.correct for r in em.rows] == [True, False, False]
    f1 = SCORERS["token_f1"](_spec("token_f1")).score(rows)
    assert f1.main == "token_f1" and f1.metrics == em.metrics
    assert [r.value for r in f1.rows] == pytest.approx([1.0, 2 / 3, 0.0])


def test_contains_scorer_matches_whole_words() -> None:
    scorer = SCORERS["contains"](_spec("contains"))
    rows = _rows([("It is Paris, of course.", "paris"), ("Parisian food", "Paris"), ("the big apple", "Big Apple")])
    result = scorer.score(rows)
    assert [r.correct for r in result.rows] == [True, False, True]
    assert result.metrics == pytest.approx({"contains": 2 / 3})
    assert scorer.check_gold("the") is not None  # empty after dropping the article
    assert scorer.check_gold("Paris") is None


def test_regex_scorer_with_task_pattern_or_gold_patterns() -> None:
    fixed = SCORERS["regex"](_spec("regex", pattern=r"^\d{3}-\d{4}$"))
    rows = _rows([("555-1234", "x"), ("call 555-1234", "x"), ("5551234", "x"), (" 555-0000 ", "x")])
    # the reply is not stripped: row 3 has spaces around it and fails the anchors
    assert fixed.score(rows).metrics == pytest.approx({"regex_match": 1 / 4})
    per_row = SCORERS["regex"](_spec("regex"))
    rows = _rows([("order #123 shipped", r"#\d+"), ("no number", r"#\d+"), ("ABC", "(?i)abc")])
    result = per_row.score(rows)
    assert [r.correct for r in result.rows] == [True, False, True]
    assert result.rows[0].detail["match"] == "#123"
    assert "not a valid regular expression" in per_row.check_gold("([unclosed")
    assert fixed.check_gold("([unclosed") is None  # the task pattern is used, golds are not patterns


def test_numeric_scorer_uses_the_last_number_and_tolerances() -> None:
    assert last_number("I think 3 + 4 = 7.") == 7.0
    assert last_number("total: 1,234.5 dollars") == 1234.5
    assert last_number("-2e-3 or .5") == 0.5 and last_number("none") is None
    assert last_number("-2e-3") == -0.002 and last_number("it was \u22127 degrees") == -7.0  # U+2212 minus
    assert last_number("pages 3-5") == 5.0 and last_number("COVID-19") == 19.0  # hyphens, not signs
    assert last_number("x = -4") == -4.0 and last_number("(+3)") == 3.0 and last_number("from -1.5 to -0.5") == -0.5
    rows = _rows([("The answer is 42", "42"), ("about 41.6", "42"), ("no idea", "42"), ("1,000", "1000"),
                  ("it is 100", "-100")])
    strict = SCORERS["numeric"](_spec("numeric")).score(rows)
    # right: rows 0 and 3 -> 2/5; parsed: every row but row 2 -> 4/5
    assert strict.metrics == pytest.approx({"numeric_accuracy": 2 / 5, "parse_rate": 4 / 5})
    assert strict.format == "parse_rate"
    # |errors| over parsed rows: 0, 0.4, 0, 200 -> mean 50.1
    assert strict.extra["mean_abs_error"] == pytest.approx(50.1)
    loose = SCORERS["numeric"](_spec("numeric", abs_tolerance=0.5)).score(rows)
    assert loose.metrics["numeric_accuracy"] == pytest.approx(3 / 5)
    relative = SCORERS["numeric"](_spec("numeric", rel_tolerance=0.01)).score(rows)  # 1 % of 42 = 0.42 >= 0.4
    assert relative.metrics["numeric_accuracy"] == pytest.approx(3 / 5)
    assert SCORERS["numeric"](_spec("numeric")).check_gold("forty-two") is not None


def test_rouge_l_hand_computed() -> None:
    # LCS("the cat is on the mat", "the cat sat on the mat") = the cat on the mat = 5 words; P = R = 5/6
    rows = _rows([("the cat sat on the mat", "the cat is on the mat"), ("x y", "a b")])
    result = SCORERS["rouge_l"](_spec("rouge_l")).score(rows)
    assert [r.value for r in result.rows] == pytest.approx([5 / 6, 0.0])
    assert result.metrics == pytest.approx({"rouge_l": 5 / 12})
    assert result.weak is True


def test_bleu_and_chrf_hand_computed() -> None:
    # corpus BLEU, two rows: 1-gram matches 4+3 of 8, 2-gram 3+2 of 6, 3-gram 2+1 of 4, 4-gram 1+0 of 2;
    # brevity penalty 1 -> (7/8 * 5/6 * 3/4 * 1/2) ** (1/4)
    rows = _rows([("a b c d", "a b c d"), ("x y z w", "x y z q")])
    result = SCORERS["bleu"](_spec("bleu")).score(rows)
    assert result.metrics["bleu"] == pytest.approx((7 / 8 * 5 / 6 * 3 / 4 * 1 / 2) ** 0.25)
    assert result.main == "bleu" and result.weak and result.rows[0].value == pytest.approx(1.0)
    # one sentence, 4-gram count 0 -> exponential smoothing: p4 = 1 / (2 * 3); (5/6 * 3/5 * 1/4 * 1/6) ** (1/4)
    single = SCORERS["bleu"](_spec("bleu")).score(_rows([("the cat sat on the mat", "the cat is on the mat")]))
    assert single.metrics["bleu"] == pytest.approx((1 / 48) ** 0.25)
    # chrF "abc" vs "abd": char 1-grams P = R = 2/3, 2-grams 1/2, 3-grams 0; mean over the 3 orders = 7/18
    chrf = SCORERS["chrf"](_spec("chrf")).score(_rows([("abc", "abd")]))
    assert chrf.main == "chrf" and chrf.metrics["chrf"] == pytest.approx(7 / 18)
    assert SCORERS["bleu"](_spec("bleu")).score([]).metrics == {"bleu": 0.0, "chrf": 0.0}


def test_repeated_ngram_share_and_health() -> None:
    # 9 words "a b c" x 3 -> 6 four-grams, 3 distinct -> 1 - 3/6 = 0.5
    assert repeated_ngram_share("a b c a b c a b c") == pytest.approx(0.5)
    assert repeated_ngram_share("one two three four five") == 0.0
    assert repeated_ngram_share("too short") == 0.0
    rows = [EvalRow("q", "gold words here", "fine answer", "stop", 4, 3),
            EvalRow("q", "gold", "a b c a b c a b c", "length", 20, 1),
            EvalRow("q", "g", "x", "stop", 2, 2),
            EvalRow("q", "g", "la la la la la la", "length", 20, 2)]  # 3 four-grams, 1 distinct -> 2/3
    stats = health(rows)
    assert stats == pytest.approx({
        "stop_rate": 0.5, "max_tokens_rate": 0.5,
        "repeated_ngram_rate": (0 + 0.5 + 0 + 2 / 3) / 4, "loop_rate": 0.5,
        "mean_reply_tokens": 46 / 4, "mean_gold_tokens": 8 / 4, "length_ratio": 46 / 8,
    })
    assert health([])["stop_rate"] == 0.0


def test_score_rows_adds_health_and_categories() -> None:
    rows = [EvalRow("q", "paris", "paris", "stop", 1, 1, "capitals"),
            EvalRow("q", "rome", "milan", "stop", 1, 1, "capitals"),
            EvalRow("q", "4", "4", "length", 8, 1, "math"),
            EvalRow("q", "x", "x", "stop", 1, 1, None)]
    result = score_rows(SCORERS["exact_match"](_spec("exact_match")), rows)
    assert result.metrics["exact_match"] == pytest.approx(3 / 4)
    assert result.health["stop_rate"] == pytest.approx(3 / 4)
    assert set(result.categories) == {"capitals", "math", "(none)"}
    assert result.categories["capitals"]["n"] == 2
    assert result.categories["capitals"]["metrics"]["exact_match"] == pytest.approx(0.5)
    assert result.categories["math"]["health"]["stop_rate"] == 0.0


def test_label_categories_share_the_whole_label_set() -> None:
    rows = [EvalRow("q", "billing", "billing", category="a"), EvalRow("q", "bug", "bug", category="b"),
            EvalRow("q", "bug", "billing", category="b")]
    result = score_rows(SCORERS["label"](_spec("label")), rows)
    assert result.confusion.labels == ["billing", "bug"]
    # category a: one row, billing right. Macro-F1 over the labels the category holds or gets: 1.0
    # (it was 0.5: bug, absent from both, counted as F1 0, so a perfect category scored 1 / labels)
    assert result.categories["a"]["metrics"]["macro_f1"] == pytest.approx(1.0)
    # category b: bug right once, once answered billing: F1(bug) = 2/3, F1(billing) = 0 -> 1/3
    assert result.categories["b"]["metrics"]["macro_f1"] == pytest.approx(1 / 3)
    assert result.categories["b"]["metrics"]["accuracy"] == pytest.approx(0.5)
    assert result.format == "valid_label_rate"
