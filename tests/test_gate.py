"""`tunesmith gate`: planted regressions (broken format on 20 % of rows, forgetting, never stopping)
fail it, a good candidate passes; thresholds come from a validated gate config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from test_quickstart_report import _Balance
from tunesmith import gate
from tunesmith.config.loader import load_yaml_model
from tunesmith.config.schema import EvalTaskSpec, GateConfig
from tunesmith.errors import ConfigError, TunesmithError
from tunesmith.evaluate import EvalResult, TaskResult, output, score_rows
from tunesmith.evaluate.probes import ProbeResult
from tunesmith.evaluate.scorers import SCORERS, EvalRow

pytestmark = pytest.mark.slow  # trains tiny models (conftest: such files run first)

SCHEMA = {"type": "object", "required": ["station", "machines"],
          "properties": {"station": {"type": "string"}, "machines": {"type": "integer"}}}
PLAN = EvalTaskSpec(name="planning", path="p.jsonl", scorer="json", json_schema=SCHEMA)
TICKETS = EvalTaskSpec(name="tickets", path="t.jsonl", scorer="label", labels=["billing", "bug", "other"])
LABELS = ["billing", "bug", "other"] * 7 + ["billing"]  # 22 rows
PROBE_CATS = {"arithmetic": 0.8, "facts": 0.75, "format_following": 0.9, "refusal": 0.6}


def _plan_rows(broken: int = 0, finish: str = "stop") -> list[EvalRow]:
    rows = []
    for i in range(20):
        gold = json.dumps({"station": f"S{i}", "machines": i % 4 + 1})
        reply = f"The station S{i} needs {i % 4 + 1} machines." if i < broken else gold
        rows.append(EvalRow(f"plan {i}", gold, reply, finish, 12, 12, source=f"p.jsonl:{i + 1}"))
    return rows


def _ticket_rows(wrong: int = 0, finish: str = "stop") -> list[EvalRow]:
    rows = []
    for i, gold in enumerate(LABELS):
        reply = "other" if i < wrong and gold != "other" else gold
        rows.append(EvalRow(f"ticket {i}", gold, reply, finish, 1, 1, category="email" if i % 2 else "chat",
                            source=f"t.jsonl:{i + 1}"))
    return rows


def _probes(scale: float = 1.0) -> ProbeResult:
    cats = {c: {"n": 10, "passed": round(a * scale * 10), "accuracy": round(a * scale * 10) / 10}
            for c, a in PROBE_CATS.items()}
    acc = sum(c["passed"] for c in cats.values()) / 40
    return ProbeResult("general.jsonl", [], acc, cats, {"stop_rate": 1.0, "max_tokens_rate": 0.0})


def _write(folder: Path, name: str, plan: list[EvalRow], tickets: list[EvalRow], probes: ProbeResult | None) -> Path:
    tasks = {}
    for spec, rows in ((PLAN, plan), (TICKETS, tickets)):
        score = score_rows(SCORERS[spec.scorer](spec), rows)
        tasks[spec.name] = TaskResult(spec, score, [r.prompt for r in rows], [r.gold for r in rows],
                                      [r.output for r in rows], rows)
    result = EvalResult(name, folder / "model", tasks, 1.0, 100, probes=probes)
    output.write(result, folder / "eval")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate")
    return {
        "baseline": _write(root / "baseline", "model", _plan_rows(), _ticket_rows(wrong=2), _probes()),
        "good": _write(root / "good", "model", _plan_rows(), _ticket_rows(wrong=1), _probes()),
        "broken_format": _write(root / "broken", "model", _plan_rows(broken=4), _ticket_rows(wrong=2), _probes()),
        "forgets": _write(root / "forgets", "model", _plan_rows(), _ticket_rows(wrong=2), _probes(scale=0.5)),
        "never_stops": _write(root / "loops", "model", _plan_rows(finish="length"), _ticket_rows(wrong=2, finish="length"),
                              _probes()),
        "no_probes": _write(root / "no_probes", "model", _plan_rows(), _ticket_rows(wrong=2), None),
    }


def _failed(result: gate.GateResult) -> set[tuple[str, str, str]]:
    return {(line.check, line.subject, line.metric) for line in result.failures}


def test_a_good_candidate_passes(runs, tmp_path: Path) -> None:
    result = gate.run(runs["good"], runs["baseline"], out_dir=tmp_path)
    assert result.passed, result.failures
    golden = {line.subject: line for line in result.lines if line.check == "golden" and line.status != "info"}
    assert set(golden) == {"planning", "tickets"}
    assert golden["planning"].candidate == 1.0 and golden["planning"].threshold == pytest.approx(0.98)
    categories = [line.subject for line in result.lines if line.status == "info" and line.check == "golden"]
    assert categories == ["tickets / chat", "tickets / email"]
    assert {p.name for p in result.files} == {"gate.json", "gate.md", "gate.html"}


def test_format_broken_on_20_percent_of_rows_fails(runs, tmp_path: Path) -> None:
    result = gate.run(runs["broken_format"], runs["baseline"], out_dir=tmp_path)
    assert not result.passed
    assert _failed(result) == {("golden", "planning", "json_valid"), ("format", "planning", "schema_compliance")}
    line = next(line for line in result.failures if line.check == "format")
    assert line.candidate == pytest.approx(0.8) and line.threshold == 0.95


def test_forgetting_fails_and_flags_categories(runs, tmp_path: Path) -> None:
    result = gate.run(runs["forgets"], runs["baseline"], out_dir=tmp_path)
    assert _failed(result) == {("capability", "probes", "accuracy")}
    line = result.failures[0]
    assert line.candidate == pytest.approx(0.5 * line.baseline, abs=0.03) and line.threshold == pytest.approx(0.8 * line.baseline)
    assert {w.subject for w in result.warnings} == {f"probes / {c}" for c in PROBE_CATS}
    strict = GateConfig.model_validate({"capability": {"category_drop": "fail"}})
    assert len(gate.run(runs["forgets"], runs["baseline"], strict, out_dir=tmp_path).failures) == 1 + len(PROBE_CATS)


def test_a_model_that_never_stops_fails(runs, tmp_path: Path) -> None:
    result = gate.run(runs["never_stops"], runs["baseline"], out_dir=tmp_path)
    assert _failed(result) == {("health", "planning", "stop_rate"), ("health", "tickets", "stop_rate")}
    relaxed = GateConfig.model_validate({"health": {"enabled": False}})
    assert gate.run(runs["never_stops"], runs["baseline"], relaxed, out_dir=tmp_path).passed


def test_missing_probe_results_fail_unless_skipped(runs, tmp_path: Path) -> None:
    result = gate.run(runs["no_probes"], runs["baseline"], out_dir=tmp_path)
    assert [line.note for line in result.failures] == ["no probe results in the candidate (missing: fail)"]
    skip = GateConfig.model_validate({"missing": "skip"})
    assert gate.run(runs["no_probes"], runs["baseline"], skip, out_dir=tmp_path).passed


def test_thresholds_are_configurable(runs, tmp_path: Path) -> None:
    loose = GateConfig.model_validate({"golden": {"ratio": 0.7}, "format": {"min": 0.8}})
    assert gate.run(runs["broken_format"], runs["baseline"], loose, out_dir=tmp_path).passed
    per_category = GateConfig.model_validate({"golden": {"category_ratio": 1.0}})
    result = gate.run(runs["good"], runs["baseline"], per_category, out_dir=tmp_path)
    assert all(line.status != "info" for line in result.lines if line.check == "golden")


def test_summary_markdown_and_json(runs, tmp_path: Path) -> None:
    gate.run(runs["broken_format"], runs["baseline"], out_dir=tmp_path)
    md = (tmp_path / "gate.md").read_text()
    assert md.startswith("## \u274c tunesmith gate: FAILED (2 failing checks)")
    assert "| format | planning | schema_compliance | 80.0% | 100.0% | \u2265 95.0% | \u274c FAIL |" in md
    assert "<details><summary>Per category and other figures, not gated (" in md
    data = json.loads((tmp_path / "gate.json").read_text())
    assert data["passed"] is False and data["failures"] == 2 and data["config"]["format"]["min"] == 0.95
    page = (tmp_path / "gate.html").read_text()
    assert '<span class="badge fail">FAILED</span>' in page and 'class="fail-row"' in page and "<script" not in page
    parser = _Balance()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    assert "Biggest regressions" in page and "The station S0 needs 1 machines." in page  # the broken rows, side by side
    assert page.count('<table class="matrix">') == 2  # tickets: baseline and candidate


def test_inputs_are_resolved_or_refused(runs, tmp_path: Path) -> None:
    assert gate.resolve(runs["good"]) == runs["good"] / "eval" / "eval_model.json"
    assert gate.resolve(runs["good"] / "eval") == runs["good"] / "eval" / "eval_model.json"
    with pytest.raises(TunesmithError, match="no evaluation results"):
        gate.resolve(tmp_path)
    (tmp_path / "eval_a.json").write_text("{}")
    (tmp_path / "eval_b.json").write_text("{}")
    with pytest.raises(TunesmithError, match="several evaluation results"):
        gate.resolve(tmp_path)
    with pytest.raises(TunesmithError, match="not an evaluation result"):
        gate.run(tmp_path / "eval_a.json", runs["baseline"])


def test_a_task_entry_without_its_fields_is_refused_by_name(runs, tmp_path: Path) -> None:
    import json

    data = json.loads((runs["good"] / "eval" / "eval_model.json").read_text())
    del data["tasks"]["planning"]["main"]
    (tmp_path / "eval_model.json").write_text(json.dumps(data))
    with pytest.raises(TunesmithError, match=r"eval_model.json: tasks.planning is not an evaluation result entry \(no main\)"):
        gate.run(tmp_path / "eval_model.json", runs["baseline"])


def test_a_judge_task_the_candidate_lacks_fails(runs, tmp_path: Path) -> None:
    """The baseline was judged on a task the candidate's evaluation does not have: as for a golden task."""
    import json
    import shutil

    shutil.copytree(runs["baseline"], tmp_path / "base")
    path = tmp_path / "base" / "eval" / "eval_model.json"
    data = json.loads(path.read_text())
    data["tasks"]["helpfulness"] = {"scorer": "judge", "n": 20, "main": "judge_score", "metrics": {
        "judge_score": 0.85, "judge_failure_rate": 0.0}, "health": {"stop_rate": 1.0}, "categories": {}}
    path.write_text(json.dumps(data))
    result = gate.run(runs["good"], tmp_path / "base", out_dir=tmp_path / "out")
    assert not result.passed and _failed(result) == {("judge", "helpfulness", "-")}


def test_gate_config_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text("golden:\n  ratio: 0.99\nformt:\n  min: 0.9\n")
    with pytest.raises(ConfigError, match=r"gate.yaml:3: formt: unknown key \(did you mean 'format'\?\)"):
        load_yaml_model(path, GateConfig, "gate config")
    path.write_text("golden:\n  ratio: 0.99\nhealth:\n  min_stop_rate: 1.5\n")
    with pytest.raises(ConfigError, match=r"gate.yaml:4: health.min_stop_rate: must be <= 1.0 \(got 1.5\)"):
        load_yaml_model(path, GateConfig, "gate config")
    path.write_text("golden:\n  ratoi: 1\n")
    with pytest.raises(ConfigError, match=r"gate.yaml:2: golden.ratoi: unknown key \(did you mean 'ratio'\?\)"):
        load_yaml_model(path, GateConfig, "gate config")


def test_cli_exit_codes(runs, tmp_path: Path) -> None:
    config = tmp_path / "gate.yaml"
    config.write_text("golden:\n  ratio: 0.98\nformat:\n  min: 0.95\n")
    ok = run_cli("gate", "--candidate", str(runs["good"]), "--baseline", str(runs["baseline"]), "--config", str(config),
                 "--out", str(tmp_path / "ok"))
    assert ok.returncode == 0, ok.stderr
    assert "tunesmith gate: passed" in ok.stdout and (tmp_path / "ok" / "gate.html").is_file()
    bad = run_cli("gate", "--candidate", str(runs["never_stops"]), "--baseline", str(runs["baseline"]),
                  "--out", str(tmp_path / "bad"))
    assert bad.returncode == 1 and "FAILED" in bad.stdout and "| health | planning | stop_rate | 0.0%" in bad.stdout
    config.write_text("golden: {ratio: -1}\n")
    err = run_cli("gate", "--candidate", str(runs["good"]), "--baseline", str(runs["baseline"]), "--config", str(config))
    assert err.returncode == 1 and "gate.yaml:1: golden.ratio: must be > 0.0 (got -1)" in err.stderr
    assert "Traceback" not in err.stderr


def test_the_readme_gate_config_is_the_default(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("**The gate**", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "gate.yaml"
    path.write_text(block)
    assert load_yaml_model(path, GateConfig, "gate config") == GateConfig()


# --- a drop within row noise (gate.noise) -------------------------------------------------------

def _plans(n: int, broken: set[int]) -> list[EvalRow]:
    rows = []
    for i in range(n):
        gold = json.dumps({"station": f"S{i}", "machines": i % 4 + 1})
        rows.append(EvalRow(f"plan {i}", gold, "no JSON here" if i in broken else gold, "stop", 12, 12,
                            source=f"p.jsonl:{i + 1}"))
    return rows


def _noise_pair(tmp_path: Path, n: int, base_broken: set[int], cand_broken: set[int]) -> tuple[Path, Path]:
    base = _write(tmp_path / "base", "model", _plans(n, base_broken), _ticket_rows(), _probes())
    cand = _write(tmp_path / "cand", "model", _plans(n, cand_broken), _ticket_rows(), _probes())
    return cand, base


def _planning(result: gate.GateResult):
    return next(line for line in result.lines if line.check == "golden" and line.subject == "planning")


def test_one_flipped_row_of_twenty_is_noise_not_a_regression(tmp_path: Path) -> None:
    cand, base = _noise_pair(tmp_path, 20, set(), {7})
    result = gate.run(cand, base, out_dir=tmp_path / "g")
    line = _planning(result)
    assert line.candidate == pytest.approx(0.95) and line.threshold == pytest.approx(0.98)
    assert result.passed and line.status == "warn"
    assert "within row noise: 1 row(s) worse, 0 better of 20 paired (sign test p = 0.5)" in line.note
    strict = GateConfig.model_validate({"golden": {"noise_alpha": None}})
    assert _failed(gate.run(cand, base, strict, out_dir=tmp_path / "s")) == {("golden", "planning", "json_valid")}


def test_a_drop_beyond_max_drop_fails_even_when_rows_are_few(tmp_path: Path) -> None:
    cand, base = _noise_pair(tmp_path, 20, set(), {3, 11})  # 2 rows: p = 0.25, but a drop of 0.10
    line = _planning(gate.run(cand, base, out_dir=tmp_path / "g"))
    assert line.status == "fail" and "drop 0.1 > max_drop 0.05" in line.note
    assert "2 row(s) worse, 0 better of 20 paired (sign test p = 0.25)" in line.note


def test_a_small_but_consistent_drop_fails_the_sign_test(tmp_path: Path) -> None:
    # 8 of 200 rows break and none improves: a drop of 0.04 (<= max_drop) but p = 1/256
    cand, base = _noise_pair(tmp_path, 200, set(), set(range(0, 200, 25)))
    line = _planning(gate.run(cand, base, out_dir=tmp_path / "g"))
    assert line.candidate == pytest.approx(0.96)
    assert line.status == "fail" and "p = 0.00391" in line.note and "p < 0.1" in line.note


def test_rows_pair_by_source_and_both_directions_count(tmp_path: Path) -> None:
    # 3 rows got worse, 2 better: net one row down of 20 -> p = P(X >= 3 | n = 5) = 16/32
    cand, base = _noise_pair(tmp_path, 20, {1, 2}, {5, 6, 9})
    line = _planning(gate.run(cand, base, out_dir=tmp_path / "g"))
    assert line.status == "warn" and "3 row(s) worse, 2 better of 20 paired (sign test p = 0.5)" in line.note


def test_without_per_row_results_the_ratio_decides(tmp_path: Path) -> None:
    cand, base = _noise_pair(tmp_path, 20, set(), {7})
    (cand / "eval" / "generations_model.jsonl").unlink()
    line = _planning(gate.run(cand, base, out_dir=tmp_path / "g"))
    assert line.status == "fail" and "no per-row results to pair" in line.note


def test_a_required_gain_is_never_excused_as_row_noise(tmp_path: Path) -> None:
    """golden.ratio > 1 ("must improve"): an unchanged candidate passed, its missed gain excused as noise."""
    cand, base = _noise_pair(tmp_path, 20, {3}, {3})  # the same rows: no change at all
    result = gate.run(cand, base, GateConfig.model_validate({"golden": {"ratio": 1.05}}), out_dir=tmp_path / "g")
    line = _planning(result)
    assert not result.passed and line.status == "fail"
    assert "ratio 1.05 asks for a gain: row noise does not excuse one not made" in line.note


def test_evaluations_of_other_rows_are_said_to_be_so(tmp_path: Path) -> None:
    """A candidate scored on 10 of the baseline's 20 rows: its figure was compared without a word."""
    base = _write(tmp_path / "base", "model", _plans(20, {1, 2}), _ticket_rows(), _probes())
    cand = _write(tmp_path / "cand", "model", _plans(20, {1, 2})[:10], _ticket_rows(), _probes())
    result = gate.run(cand, base, out_dir=tmp_path / "g")
    rows = next(line for line in result.lines if line.subject == "planning" and line.metric == "rows")
    assert rows.status == "warn" and result.passed is not None
    assert ("scored on other rows than the baseline (n 10 vs 20; 10 row(s) only in the baseline, 0 only in the "
            "candidate)") in rows.note
    same = gate.run(base, base, out_dir=tmp_path / "s")
    assert not any(line.metric == "rows" for line in same.lines)


def test_judge_scores_from_another_judge_are_not_compared(runs, tmp_path: Path) -> None:
    import shutil

    for side, model in (("base", "judge-a"), ("cand", "judge-b")):
        shutil.copytree(runs["baseline"], tmp_path / side)
        path = tmp_path / side / "eval" / "eval_model.json"
        data = json.loads(path.read_text())
        data["tasks"]["helpfulness"] = {"scorer": "judge", "n": 20, "main": "judge_score", "metrics": {
            "judge_score": 0.85, "judge_failure_rate": 0.0}, "health": {"stop_rate": 1.0}, "categories": {},
            "extra": {"model": model, "rubric": "helpful"}}
        path.write_text(json.dumps(data))
    result = gate.run(tmp_path / "cand", tmp_path / "base", out_dir=tmp_path / "out")
    assert _failed(result) == {("judge", "helpfulness", "judge")}
    line = next(line for line in result.failures)
    assert "judged differently from the baseline (model 'judge-a' -> 'judge-b')" in line.note


def test_sign_test_is_the_exact_binomial_tail() -> None:
    from tunesmith.gate.noise import sign_test

    before = {f"r{i}": 1.0 for i in range(6)}
    after = {**before, "r0": 0.0, "r1": 0.0, "r2": 0.0, "r3": 0.0}
    before["r5"] = 0.0  # r5 improved
    paired = sign_test(before, after)
    assert (paired.shared, paired.worse, paired.better) == (6, 4, 1)
    assert paired.p == pytest.approx(6 / 32)  # P(X >= 4), X ~ Binomial(5, 1/2)
    assert sign_test({"a": 1.0}, {"b": 0.0}) is None
    assert sign_test({"a": 1.0}, {"a": 1.0}).p == 1.0


def test_a_damaged_generations_file_is_one_error_naming_it(tmp_path: Path) -> None:
    cand, base = _noise_pair(tmp_path, 20, set(), {7})
    gens = cand / "eval" / "generations_model.jsonl"
    gens.write_text(gens.read_text("utf-8") + "{not json\n", "utf-8")
    with pytest.raises(TunesmithError, match=r"generations_model\.jsonl: not readable as the scored rows of eval_model\.json"):
        gate.run(cand, base, out_dir=tmp_path / "g")
