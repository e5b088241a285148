"""Second review of evaluation and the gate: each test failed before its fix.

Scorers against sacrebleu on hand-made rows, the judge's cache file and pairwise comparison
against a real scripted OpenAI-compatible server on 127.0.0.1 (``judge_server.py``), and the
gate on evaluations written to disk exactly as ``tunesmith evaluate`` writes them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from judge_server import JudgeServer, Reply, user_text, verdict
from tunesmith import gate
from tunesmith.config import config_from_dict
from tunesmith.config.schema import EvalTaskSpec, JudgeConfig
from tunesmith.errors import ConfigError
from tunesmith.evaluate import EvalResult, TaskResult, output, score_rows
from tunesmith.evaluate.judge import JudgeError, load_rubric
from tunesmith.evaluate.probes import ProbeResult
from tunesmith.evaluate.scorers import SCORERS, EvalRow, ScoreContext

SCHEMA = {"type": "object", "required": ["station"], "properties": {"station": {"type": "string"}}}
PLAN = EvalTaskSpec(name="planning", path="p.jsonl", scorer="json", json_schema=SCHEMA)
HELP = EvalTaskSpec(name="helpfulness", path="h.jsonl", scorer="judge")


def _spec(scorer: str) -> EvalTaskSpec:
    return EvalTaskSpec(name="t", path="t.jsonl", scorer=scorer)


def _judge_cfg(url: str, **kw: object) -> JudgeConfig:
    return JudgeConfig(**{"base_url": url, "model": "judge-1", "backoff": 0.01, "timeout": 5, "workers": 2, **kw})


def _plans(n: int = 20, gold_prefix: str = "S") -> list[EvalRow]:
    rows = []
    for i in range(n):
        gold = json.dumps({"station": f"{gold_prefix}{i}"})
        rows.append(EvalRow(f"plan {i}", gold, gold, "stop", 5, 5, source=f"p.jsonl:{i + 1}"))
    return rows


def _help_rows(n: int = 10) -> list[EvalRow]:
    return [EvalRow(f"help me {i}", f"answer {i}", f"reply {i}", "stop", 3, 3, source=f"h.jsonl:{i + 1}")
            for i in range(n)]


def _probes(path: str = "general.jsonl", n: int = 40) -> ProbeResult:
    from tunesmith.evaluate.probes.core import ProbeRow

    rows = [ProbeRow(f"p{i}", "facts", f"q{i}", "a", i % 2 == 0, "stop", 1) for i in range(n)]
    cats = {"facts": {"n": n, "passed": n // 2, "accuracy": 0.5}}
    return ProbeResult(path, rows, 0.5, cats, {"stop_rate": 1.0})


def _write(folder: Path, tasks: dict[str, tuple[object, list[EvalRow]]], probes: ProbeResult | None = None) -> Path:
    """An evaluation on disk (eval_model.json + generations_model.jsonl) from scorers and rows."""
    results = {}
    for name, (scorer, rows) in tasks.items():
        score = score_rows(scorer, rows)
        results[name] = TaskResult(scorer.spec, score, [r.prompt for r in rows], [r.gold for r in rows],
                                   [r.output for r in rows], rows)
    output.write(EvalResult("model", folder / "model", results, 1.0, 10, probes=probes or _probes()), folder / "eval")
    return folder


def _lines(result: gate.GateResult, status: str) -> set[tuple[str, str, str]]:
    return {(line.check, line.subject, line.metric) for line in result.lines if line.status == status}


# --- scorers ---------------------------------------------------------------------------------------

def test_chrf_rows_carry_sentence_chrf_not_sentence_bleu() -> None:
    """A chrf task wrote each row's sentence BLEU as its score (0 for "abc" vs "abd", chrF 7/18)."""
    import sacrebleu

    pairs = [("abc", "abd"), ("the cat sat on the mat", "the cat is on the mat"), ("", "x y")]
    rows = [EvalRow("q", gold, out) for out, gold in pairs]
    chrf = SCORERS["chrf"](_spec("chrf")).score(rows)
    assert chrf.rows[0].value == pytest.approx(7 / 18)
    assert [r.value for r in chrf.rows] == pytest.approx([sacrebleu.sentence_chrf(o, [g]).score / 100 for o, g in pairs])
    bleu = SCORERS["bleu"](_spec("bleu")).score(rows)
    assert [r.value for r in bleu.rows] == pytest.approx([sacrebleu.sentence_bleu(o, [g]).score / 100 for o, g in pairs])


def test_rouge_l_a_mean_of_rows_gets_an_interval_corpus_scores_none() -> None:
    """README: a bootstrap for means of row values, corpus BLEU/chrF get none; ROUGE-L (a row mean) got none."""
    rows = [EvalRow(f"q{i}", "the red car is fast", reply) for i, reply in
            enumerate(["the red car is fast", "a red car", "the car", "nothing at all", "red car fast"] * 4)]
    rouge = score_rows(SCORERS["rouge_l"](_spec("rouge_l")), rows)
    assert rouge.interval is not None and rouge.interval.method.startswith("bootstrap")
    assert rouge.interval.low < rouge.metrics["rouge_l"] < rouge.interval.high
    for name in ("bleu", "chrf"):
        assert score_rows(SCORERS[name](_spec(name)), rows).interval is None


# --- the judge ---------------------------------------------------------------------------------------

def test_an_unusable_verdict_cache_file_is_a_config_error_not_a_crash(tmp_path: Path) -> None:
    """judge.cache naming a file that is not SQLite crashed as an internal error (exit 70)."""
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 100)
    with JudgeServer(lambda request, n: Reply(content=verdict())) as server:
        for where in (text, tmp_path):  # a text file, a folder
            scorer = SCORERS["judge"](HELP, ScoreContext(judge=_judge_cfg(server.base_url, cache=str(where)),
                                                         out_dir=tmp_path))
            with pytest.raises(ConfigError, match=r"judge\.cache: .* cannot hold the judge's verdict cache"):
                scorer.score(_help_rows(2))


def _compare_config(tmp_path: Path, url: str) -> object:
    return config_from_dict({"base_model": str(tmp_path / "base"), "datasets": [{"path": "train.jsonl"}],
                             "output_dir": str(tmp_path / "run"),
                             "eval_tasks": [{"name": "planning", "path": "p.jsonl", "scorer": "json",
                                             "json_schema": SCHEMA}],
                             "judge": {"base_url": url, "model": "j", "max_retries": 0, "backoff": 0.01}})


def _evaluation(name: str, rows: list[EvalRow]) -> EvalResult:
    score = score_rows(SCORERS["json"](PLAN), rows)
    task = TaskResult(PLAN, score, [r.prompt for r in rows], [r.gold for r in rows], [r.output for r in rows], rows)
    return EvalResult(name, Path(name), {"planning": task}, 1.0, 0)


def test_pairwise_without_any_valid_verdict_stops(tmp_path: Path) -> None:
    """Every pairwise verdict failed (fewer than max_consecutive_failures): 0 of 0 judged, exit 0."""
    from tunesmith.evaluate import compare

    evals = (_evaluation("a", _plans(2)), _evaluation("b", _plans(2)))
    with JudgeServer(lambda request, n: Reply(content="no idea")) as server:
        with pytest.raises(JudgeError, match="no valid pairwise verdict for any of the 2 pairs"):
            compare(_compare_config(tmp_path, server.base_url), "a", "b", out_dir=tmp_path / "eval", evals=evals)
        assert len(server.requests) == 4  # both orders of both pairs were asked
    table = {"1": json.dumps({"winner": "1", "reason": "x"})}
    with JudgeServer(lambda request, n: Reply(content=table["1"])) as server:  # a judge that always picks reply 1
        result = compare(_compare_config(tmp_path, server.base_url), "a", "b", out_dir=tmp_path / "eval2", evals=evals)
    assert result.overall["ties"] == 2 and result.overall["position_bias"]["share"] == 1.0
    assert len(result.judge["rubric_fingerprint"]) == 16


def _judged(folder: Path, url: str, **judge: object) -> Path:
    scorer = SCORERS["judge"](HELP, ScoreContext(judge=_judge_cfg(url, **judge), out_dir=folder / "eval"))
    return _write(folder, {"planning": (SCORERS["json"](PLAN), _plans()), "helpfulness": (scorer, _help_rows())})


def test_a_rubric_edited_under_the_same_name_is_not_compared(tmp_path: Path) -> None:
    """Both rubrics are named 'default' but grade on other scales: the gate compared their scores."""
    import yaml

    default = load_rubric()
    data = json.loads(default.model_dump_json())
    data["criteria"][0]["scale"] = [0, 10]  # the same name, another rubric
    edited = tmp_path / "rubric.yaml"
    edited.write_text(yaml.safe_dump(data))

    def script(request: dict, n: int) -> Reply:
        ten = "from 0 (worst) to 10" in user_text(request)
        return Reply(content=verdict(correctness=10 if ten else 5, completeness=5, format=5))

    with JudgeServer(script) as server:
        base = _judged(tmp_path / "base", server.base_url)
        cand = _judged(tmp_path / "cand", server.base_url, rubric=str(edited))
    result = gate.run(cand, base, out_dir=tmp_path / "g")
    assert not result.passed and ("judge", "helpfulness", "judge") in _lines(result, "fail")
    line = next(line for line in result.failures if line.metric == "judge")
    assert "rubric 'default' edited: fingerprint" in line.note
    assert gate.run(base, base, out_dir=tmp_path / "same").passed


def test_a_baseline_whose_judge_failed_on_most_rows_is_no_baseline(tmp_path: Path) -> None:
    """The baseline's judge_score came from 4 of 10 rows; the candidate was held to it and passed."""
    def flaky(request: dict, n: int) -> Reply:
        ok = any(f"## Reply to grade\nreply {i}\n" in user_text(request) for i in range(4))
        return Reply(content=verdict(3, 3, 3) if ok else "no idea")

    with JudgeServer(flaky) as server:
        base = _judged(tmp_path / "base", server.base_url, max_retries=0, max_consecutive_failures=50, workers=1)
    with JudgeServer(lambda request, n: Reply(content=verdict(4, 4, 4))) as server:
        cand = _judged(tmp_path / "cand", server.base_url)
    summary = json.loads((base / "eval" / "eval_model.json").read_text())["tasks"]["helpfulness"]
    assert summary["metrics"]["judge_failure_rate"] == pytest.approx(0.6)
    result = gate.run(cand, base, out_dir=tmp_path / "g")
    assert _lines(result, "fail") == {("judge", "helpfulness (baseline)", "judge_failure_rate")}
    assert ("judge", "helpfulness", "judge_failure_rate") in _lines(result, "pass")


# --- the gate's inputs -------------------------------------------------------------------------------

def test_a_baseline_of_another_task_version_fails(tmp_path: Path) -> None:
    """The task file was edited (every gold changed, same lines): the rows were paired as the same ones."""
    base = _write(tmp_path / "base", {"planning": (SCORERS["json"](PLAN), _plans())})
    cand = _write(tmp_path / "cand", {"planning": (SCORERS["json"](PLAN), _plans(gold_prefix="T"))})
    result = gate.run(cand, base, out_dir=tmp_path / "g")
    assert _lines(result, "fail") == {("golden", "planning", "task")}
    line = result.failures[0]
    assert "another version of the task" in line.note and "20 of 20 rows of the same source" in line.note
    assert gate.run(base, base, out_dir=tmp_path / "same").passed
    # the same rows scored by another scorer (exact_match shares no headline with json)
    other = EvalTaskSpec(name="planning", path="p.jsonl", scorer="exact_match")
    again = _write(tmp_path / "other", {"planning": (SCORERS["exact_match"](other), _plans())})
    result = gate.run(again, base, out_dir=tmp_path / "g2")
    assert ("golden", "planning", "task") in _lines(result, "fail")
    assert "scorer 'json' -> 'exact_match'" in next(line.note for line in result.failures if line.metric == "task")


def test_a_headline_missing_from_the_baseline_never_passes(tmp_path: Path) -> None:
    """A baseline without the task's headline was a threshold of 0: any candidate passed."""
    base = _write(tmp_path / "base", {"planning": (SCORERS["json"](PLAN), _plans())})
    path = base / "eval" / "eval_model.json"
    data = json.loads(path.read_text())
    del data["tasks"]["planning"]["metrics"]["json_valid"]
    path.write_text(json.dumps(data))
    cand = _write(tmp_path / "cand", {"planning": (SCORERS["json"](PLAN), _plans())})
    result = gate.run(cand, base, out_dir=tmp_path / "g")
    assert not result.passed and _lines(result, "fail") == {("golden", "planning", "json_valid")}
    assert result.failures[0].note == "metric missing from the baseline"


def test_probes_of_another_probe_set_are_said_to_be_so(tmp_path: Path) -> None:
    tasks = {"planning": (SCORERS["json"](PLAN), _plans())}
    base = _write(tmp_path / "base", tasks)
    cand = _write(tmp_path / "cand", tasks, probes=_probes("mine.jsonl", 10))
    result = gate.run(cand, base, out_dir=tmp_path / "g")
    assert ("capability", "probes", "items") in _lines(result, "warn")
    line = next(line for line in result.warnings if line.metric == "items")
    assert "mine.jsonl, n 10 vs general.jsonl, n 40" in line.note
    assert not any(line.metric == "items" for line in gate.run(base, base, out_dir=tmp_path / "s").lines)
