"""LLM-as-judge against a real scripted OpenAI-compatible HTTP server on 127.0.0.1: rubric metrics,
retries, timeouts, counted failures, clear errors, the verdict cache, pairwise statistics."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from judge_server import JudgeServer, Reply, free_port, user_text, verdict
from tunesmith.config.schema import EvalTaskSpec, JudgeConfig
from tunesmith.errors import ConfigError
from tunesmith.evaluate.judge import (
    JudgeError, Pair, fingerprint, judge_pairs, load_rubric, open_client, parse_pairwise, parse_rubric, summarise,
    wilson,
)
from tunesmith.evaluate.judge.verdict import VerdictError
from tunesmith.evaluate.scorers import SCORERS, EvalRow, ScoreContext

SPEC = EvalTaskSpec(name="chat", path="chat.jsonl", scorer="judge")


def _cfg(url: str, **kw: object) -> JudgeConfig:
    return JudgeConfig(**{"base_url": url, "model": "judge-1", "backoff": 0.01, "timeout": 5, "workers": 2, **kw})


def _score(cfg: JudgeConfig, rows: list[EvalRow], tmp_path: Path):
    return SCORERS["judge"](SPEC, ScoreContext(judge=cfg, out_dir=tmp_path)).score(rows)


def _by_reply(table: dict[str, str]):
    """A judge whose verdict depends on which reply it is shown (the row's output is unique)."""
    def script(request: dict, n: int) -> Reply:
        text = user_text(request)
        return Reply(content=next(v for k, v in table.items() if f"## Reply to grade\n{k}\n" in text))
    return script


ROWS = [EvalRow("What is 2+2?", "4", "four", source="t.jsonl:1"),
        EvalRow("Capital of France?", "Paris", "Lyon, which is the capital", source="t.jsonl:2"),
        EvalRow("Say hi", "hi", "asdf", source="t.jsonl:3")]


def test_rubric_metrics_are_hand_computed(tmp_path: Path) -> None:
    table = {"four": verdict(5, 5, 5), "Lyon, which is the capital": verdict(3, 4, 1, True), "asdf": verdict(1, 1, 1)}
    with JudgeServer(_by_reply(table)) as server:
        result = _score(_cfg(server.base_url), ROWS, tmp_path)
    # per row (score - 1) / 4: (1, 1, 1), (0.5, 0.75, 0), (0, 0, 0)
    assert result.metrics == pytest.approx({
        "judge_score": (1 + (0.5 + 0.75 + 0) / 3 + 0) / 3, "judge_correctness": 0.5, "judge_completeness": 1.75 / 3,
        "judge_format": 1 / 3, "hallucination_rate": 1 / 3, "judge_pass_rate": 1 / 3, "judge_failure_rate": 0.0,
    })
    assert result.extra["means"] == pytest.approx({"correctness": 3.0, "completeness": 10 / 3, "format": 7 / 3})
    assert result.extra["distribution"]["correctness"] == {1: 1, 3: 1, 5: 1}
    assert [r.correct for r in result.rows] == [True, False, False]
    assert result.rows[1].detail["verdict"]["flags"] == {"hallucination": True}
    # the judge saw the request, the reference answer and the reply
    assert "## Reference answer" in user_text(server.requests[0]) and server.requests[0]["model"] == "judge-1"
    assert server.requests[0]["temperature"] == 0.0


def test_non_json_and_out_of_range_replies_are_retried(tmp_path: Path) -> None:
    replies = iter(["Sure! The reply looks great.", json.dumps({"correctness": 7, "completeness": 1, "format": 1,
                                                                 "hallucination": False}),
                    "```json\n" + verdict(4, 4, 4) + "\n```"])
    with JudgeServer(lambda req, n: Reply(content=next(replies))) as server:
        result = _score(_cfg(server.base_url, workers=1), ROWS[:1], tmp_path)
    assert len(server.requests) == 3
    assert result.rows[0].detail["attempts"] == 3 and result.metrics["judge_correctness"] == pytest.approx(0.75)


def test_a_failed_verdict_is_counted_never_scored(tmp_path: Path) -> None:
    def script(request: dict, n: int) -> Reply:
        return Reply(content="no idea" if "asdf" in user_text(request) else verdict(5, 5, 5))

    with JudgeServer(script) as server:
        result = _score(_cfg(server.base_url, max_retries=2), ROWS, tmp_path)
        asked = sum("asdf" in user_text(r) for r in server.requests)
    assert asked == 3  # one try + two retries
    assert result.metrics["judge_failure_rate"] == pytest.approx(1 / 3)
    assert result.metrics["judge_score"] == 1.0  # the failed row is left out, not scored 0
    failed = result.rows[2]
    assert failed.score is None and "unusable reply (the reply holds no JSON object)" in failed.detail["failed"]
    assert result.extra["failed"] == 1 and result.extra["failures"][0].startswith("t.jsonl:3: unusable reply")


def test_server_errors_are_retried_then_counted(tmp_path: Path) -> None:
    def script(request: dict, n: int) -> Reply:
        if "asdf" in user_text(request):
            return Reply(status=500)
        return Reply(status=503) if n == 0 else Reply(content=verdict())

    with JudgeServer(script) as server:
        result = _score(_cfg(server.base_url, workers=1, max_retries=1), ROWS, tmp_path)
    assert [r.detail["failed"] for r in result.rows] == [None, None, "HTTP 500"]
    assert result.rows[0].detail["attempts"] == 2  # 503, then a verdict


def test_a_slow_judge_times_out_instead_of_hanging(tmp_path: Path) -> None:
    def script(request: dict, n: int) -> Reply:
        return Reply(content=verdict(), delay=3.0 if "asdf" in user_text(request) else 0.0)

    with JudgeServer(script) as server:
        start = time.monotonic()
        result = _score(_cfg(server.base_url, timeout=0.5, max_retries=1, workers=3), ROWS, tmp_path)
        elapsed = time.monotonic() - start
    assert result.rows[2].detail["failed"] == "no reply within 0.5 s"
    assert result.metrics["judge_failure_rate"] == pytest.approx(1 / 3)
    assert elapsed < 2.9  # two 0.5 s tries, not the 3 s the judge would take


def test_an_unreachable_judge_stops_with_a_clear_error(tmp_path: Path) -> None:
    cfg = _cfg(f"http://127.0.0.1:{free_port()}/v1", max_retries=1, max_consecutive_failures=2, workers=1)
    rows = ROWS * 4
    start = time.monotonic()
    with pytest.raises(JudgeError, match=r"2 verdicts in a row failed after 2 tries each; last: cannot connect"):
        _score(cfg, rows, tmp_path)
    assert time.monotonic() - start < 10


def test_every_row_failing_is_an_error_not_a_score(tmp_path: Path) -> None:
    with JudgeServer(lambda req, n: Reply(content="[1, 2, 3]")) as server:
        with pytest.raises(JudgeError, match="no valid verdict for any of the 3 rows of task 'chat'"):
            _score(_cfg(server.base_url, max_retries=0, max_consecutive_failures=10), ROWS, tmp_path)


def test_wrong_key_or_model_is_an_error_at_once(tmp_path: Path) -> None:
    with JudgeServer(lambda req, n: Reply(status=404)) as server:
        with pytest.raises(JudgeError, match="HTTP 404"):
            _score(_cfg(server.base_url, workers=1), ROWS, tmp_path)
        assert len(server.requests) == 1  # not retried: another try cannot fix it


def test_missing_api_key_variable_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNESMITH_TEST_JUDGE_KEY", raising=False)
    with pytest.raises(ConfigError, match="judge.api_key_env: the environment variable TUNESMITH_TEST_JUDGE_KEY"):
        _score(_cfg("http://127.0.0.1:9/v1", api_key_env="TUNESMITH_TEST_JUDGE_KEY"), ROWS, tmp_path)
    monkeypatch.setenv("TUNESMITH_TEST_JUDGE_KEY", "sk-test")
    with JudgeServer(lambda req, n: Reply(content=verdict())) as server:
        _score(_cfg(server.base_url, api_key_env="TUNESMITH_TEST_JUDGE_KEY"), ROWS[:1], tmp_path)


def test_verdicts_are_cached_by_request_model_and_rubric(tmp_path: Path) -> None:
    with JudgeServer(lambda req, n: Reply(content=verdict(4, 4, 4))) as server:
        first = _score(_cfg(server.base_url), ROWS, tmp_path)
        assert len(server.requests) == 3
        again = _score(_cfg(server.base_url), ROWS, tmp_path)
        assert len(server.requests) == 3  # a re-run costs nothing
        assert again.metrics == first.metrics and all(r.detail["cached"] for r in again.rows)
        _score(_cfg(server.base_url, model="judge-2"), ROWS, tmp_path)
        assert len(server.requests) == 6  # another judge model: asked again
        changed = EvalRow(ROWS[0].prompt, ROWS[0].gold, "4")
        _score(_cfg(server.base_url), [changed, *ROWS[1:]], tmp_path)
        assert len(server.requests) == 7  # only the changed reply
        rubric = _rubric_file(tmp_path, pass_min=5)
        _score(_cfg(server.base_url, rubric=str(rubric)), ROWS, tmp_path)
        assert len(server.requests) == 10  # another rubric: asked again
    assert (tmp_path / "judge_cache.sqlite").is_file()



def test_another_judge_under_the_same_name_is_asked_afresh(tmp_path: Path) -> None:
    """The same model name at another endpoint, or other weights served under it, or another reply budget:
    no verdict of the first judge answers for it."""
    script = lambda req, n: Reply(content=verdict(4, 4, 4))  # noqa: E731
    with JudgeServer(script) as server, JudgeServer(script) as other:
        server.model = other.model = "judge-1"
        server.root = "/models/judge-a"
        _score(_cfg(server.base_url), ROWS, tmp_path)
        again = _score(_cfg(server.base_url + "/"), ROWS, tmp_path)
        assert len(server.requests) == 3 and all(r.detail["cached"] for r in again.rows)  # same judge: cached
        _score(_cfg(other.base_url), ROWS, tmp_path)
        assert len(other.requests) == 3  # the same name at another endpoint
        server.root = "/models/judge-b"
        _score(_cfg(server.base_url), ROWS, tmp_path)
        assert len(server.requests) == 6  # other weights behind the same name and endpoint
        _score(_cfg(server.base_url, max_tokens=64), ROWS, tmp_path)
        assert len(server.requests) == 9  # another reply budget (a cut reply is another verdict)
        _score(_cfg(server.base_url), ROWS, tmp_path)
        assert len(server.requests) == 9  # and each is cached in turn

def _rubric_file(tmp_path: Path, **changes: object) -> Path:
    import yaml

    from importlib.resources import files

    data = yaml.safe_load(files("tunesmith.evaluate.judge").joinpath("rubric.yaml").read_text("utf-8"))
    data.update(changes)
    path = tmp_path / "my_rubric.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_rubric_is_data_and_validated_with_file_and_line(tmp_path: Path) -> None:
    rubric = load_rubric()
    assert [c.name for c in rubric.criteria] == ["correctness", "completeness", "format"]
    assert [f.name for f in rubric.flags] == ["hallucination"] and all(c.scale == (1, 5) for c in rubric.criteria)
    bad = tmp_path / "rubric.yaml"
    bad.write_text("name: mine\nsystem: grade\ntemplate: '{{ reply }}'\npairwise: {system: s, template: t}\n"
                   "criteria:\n  - name: correctness\n    description: right?\n    scale: [1, 5]\n"
                   "  - name: tone\n    description: polite?\n")
    with pytest.raises(ConfigError, match=r"^.*rubric.yaml:9: criteria\[1\].scale: required$"):
        load_rubric(bad)
    bad.write_text(bad.read_text() + "    scale: [5, 1]\n")
    with pytest.raises(ConfigError, match=r"rubric.yaml:11: criteria\[1\].scale: must be \[lowest, highest\]"):
        load_rubric(bad)
    broken = _rubric_file(tmp_path, template="{% for c in criteria %}")
    with pytest.raises(ConfigError, match="template: not a valid Jinja template"):
        load_rubric(broken)
    assert fingerprint(load_rubric(_rubric_file(tmp_path, pass_min=5))) != fingerprint(rubric)


def test_verdict_parsing() -> None:
    rubric = load_rubric()
    parsed = parse_rubric('Here: {"correctness": "5", "completeness": 4.0, "format": 3, "hallucination": "no"}', rubric)
    assert parsed["scores"] == {"correctness": 5, "completeness": 4, "format": 3}
    assert parsed["flags"] == {"hallucination": False}
    with pytest.raises(VerdictError, match="missing key"):
        parse_rubric('{"correctness": 5}', rubric)
    with pytest.raises(VerdictError, match="'format' must be an integer from 1 to 5"):
        parse_rubric('{"correctness": 5, "completeness": 4, "format": 3.5, "hallucination": false}', rubric)
    assert parse_pairwise('{"winner": 2}') == "2" and parse_pairwise('{"winner": "Tie"}') == "tie"
    with pytest.raises(VerdictError, match="'winner' must be"):
        parse_pairwise('{"winner": "both"}')


def test_wilson_interval_hand_computed() -> None:
    low, high = wilson(8, 10)  # p = .8, z = 1.96: centre .7167, half-width .2266
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0) and wilson(5, 5)[1] == 1.0


def test_pairwise_swaps_order_and_reports_biases(tmp_path: Path) -> None:
    """Pairs 0-1: B is clearly better (both orders agree). Pairs 2-3: the judge always picks the
    first reply shown (orders disagree -> tie). Pair 4: a real tie."""
    pairs = [Pair("t", f"q{i}", None, a, b) for i, (a, b) in
             enumerate([("bad", "GOOD answer"), ("bad", "GOOD reply!"), ("x1", "y1 longer"), ("x2 longer", "y2"),
                        ("same", "same!")])]

    def script(request: dict, n: int) -> Reply:
        text = user_text(request)
        first = text.split("## Reply 1\n", 1)[1].split("\n", 1)[0]
        second = text.split("## Reply 2\n", 1)[1].split("\n", 1)[0]
        if "same" in first:
            return Reply(content='{"winner": "tie"}')
        if "GOOD" in first or "GOOD" in second:
            return Reply(content=json.dumps({"winner": "1" if "GOOD" in first else "2"}))
        return Reply(content='{"winner": "1", "reason": "the first one"}')

    with JudgeServer(script) as server:
        client = open_client(_cfg(server.base_url), "rubric-id", tmp_path / "cache.sqlite")
        verdicts = judge_pairs(client, load_rubric(), pairs)
        client.close()
    assert len(server.requests) == 10  # every pair twice
    assert [v.result for v in verdicts] == ["b", "b", "tie", "tie", "tie"]
    s = summarise(verdicts)
    assert (s["wins"], s["ties"], s["losses"], s["judged"], s["failed"]) == (0, 3, 2, 5, 0)
    assert s["shares"]["losses"]["share"] == pytest.approx(0.4)
    assert s["shares"]["losses"]["ci95"] == pytest.approx(list(wilson(2, 5)))
    assert s["agreement"] == pytest.approx(3 / 5)
    # named winners: pairs 0-1 twice each (first shown in 2 of 4), pairs 2-3 twice each (first in 4 of 4)
    assert s["position_bias"] == {"first_wins": 6, "verdicts": 8, "share": 0.75}
    # longer reply won: pairs 0-1 all 4 (B longer); pair 2: B longer, won when first (1 of 2); pair 3: A longer, 1 of 2
    assert s["length_bias"] == {"longer_wins": 6, "verdicts": 8, "share": 0.75}


def test_pairwise_failures_are_counted(tmp_path: Path) -> None:
    pairs = [Pair("t", "q", None, "a", "b"), Pair("t", "q2", None, "c", "d")]

    def script(request: dict, n: int) -> Reply:
        return Reply(content="garbage" if "q2" in user_text(request) else '{"winner": "tie"}')

    with JudgeServer(script) as server:
        client = open_client(_cfg(server.base_url, max_retries=0), "r", tmp_path / "c.sqlite")
        s = summarise(judge_pairs(client, load_rubric(), pairs))
        client.close()
    assert (s["n"], s["judged"], s["failed"], s["ties"]) == (2, 1, 1, 1)


def test_rubric_and_pairwise_response_formats_are_built_from_the_rubric() -> None:
    from tunesmith.evaluate.judge import pairwise_format, rubric_format

    fmt = rubric_format(load_rubric())
    scale = {"type": "integer", "enum": [1, 2, 3, 4, 5]}
    reason = {"type": "string", "maxLength": 300}
    assert fmt == {"type": "json_schema", "json_schema": {"name": "rubric_verdict", "schema": {
        "type": "object", "additionalProperties": False,
        "properties": {"correctness": scale, "completeness": scale, "format": scale,
                       "hallucination": {"type": "boolean"}, "reason": reason},
        "required": ["correctness", "completeness", "format", "hallucination", "reason"]}}}
    assert list(fmt["json_schema"]["schema"]["properties"]) == fmt["json_schema"]["schema"]["required"]  # key order
    assert pairwise_format()["json_schema"]["schema"]["properties"] == {
        "winner": {"type": "string", "enum": ["1", "2", "tie"]}, "reason": reason}
    # every reply the schema admits parses (both ends of each scale), one outside it does not
    for value in (1, 5):
        parsed = parse_rubric(json.dumps({"correctness": value, "completeness": value, "format": value,
                                          "hallucination": True, "reason": "r"}), load_rubric())
        assert parsed["scores"] == {"correctness": value, "completeness": value, "format": value}
    custom = load_rubric().model_copy(update={"criteria": [load_rubric().criteria[0].model_copy(update={"scale": (0, 2)})],
                                              "flags": []})
    props = rubric_format(custom)["json_schema"]["schema"]["properties"]
    assert props == {"correctness": {"type": "integer", "enum": [0, 1, 2]}, "reason": reason}


def test_tunesmith_serve_compiles_both_response_formats() -> None:
    pytest.importorskip("llguidance")
    from tunesmith.evaluate.judge import pairwise_format, rubric_format
    from tunesmith.serve.grammar import compile_format

    assert compile_format(rubric_format(load_rubric())) and compile_format(pairwise_format())


def test_verdicts_are_asked_with_the_schema_and_still_validated(tmp_path: Path) -> None:
    """An endpoint that takes response_format but ignores it: the out-of-range reply is still refused."""
    from tunesmith.evaluate.judge import pairwise_format, rubric_format

    replies = iter([verdict(6, 1, 1), verdict(2, 3, 4)])
    with JudgeServer(lambda req, n: Reply(content=next(replies))) as server:
        result = _score(_cfg(server.base_url, workers=1), ROWS[:1], tmp_path)
        client = open_client(_cfg(server.base_url, workers=1), "r", tmp_path / "c.sqlite")
        server.script = lambda req, n: Reply(content='{"winner": "tie"}')
        judge_pairs(client, load_rubric(), [Pair("t", "q", None, "a", "b")])
        client.close()
    assert [r["response_format"] for r in server.requests] == [rubric_format(load_rubric())] * 2 + [pairwise_format()] * 2
    assert result.rows[0].detail["attempts"] == 2 and result.rows[0].detail["structured"] is True
    assert result.metrics["judge_correctness"] == pytest.approx(0.25)
    assert result.extra["structured"] == 1 and result.extra["format_refused"] is None


def test_an_endpoint_refusing_response_format_is_asked_plainly_from_then_on(tmp_path: Path) -> None:
    def script(request: dict, n: int) -> Reply:
        return Reply(status=400) if "response_format" in request else Reply(content=verdict(4, 4, 4))

    with JudgeServer(script) as server:
        result = _score(_cfg(server.base_url, workers=1), ROWS, tmp_path)
    # one refused request, the same one plainly, then plain requests only
    assert ["response_format" in r for r in server.requests] == [True, False, False, False]
    assert server.requests[0]["messages"] == server.requests[1]["messages"]
    assert result.metrics["judge_failure_rate"] == 0.0 and result.metrics["judge_correctness"] == pytest.approx(0.75)
    assert [r.detail["attempts"] for r in result.rows] == [1, 1, 1]
    assert [r.detail["structured"] for r in result.rows] == [False, False, False]
    assert result.extra["format_refused"] == "HTTP 400: scripted status 400"


def test_structured_true_makes_a_refusal_an_error_and_false_never_asks(tmp_path: Path) -> None:
    def script(request: dict, n: int) -> Reply:
        return Reply(status=422) if "response_format" in request else Reply(content=verdict())

    with JudgeServer(script) as server:
        with pytest.raises(JudgeError, match="HTTP 422: .*carried response_format: set judge.structured to auto or false"):
            _score(_cfg(server.base_url, workers=1, structured=True), ROWS, tmp_path)
        assert len(server.requests) == 1
        result = _score(_cfg(server.base_url, structured=False), ROWS, tmp_path)
        assert not any("response_format" in r for r in server.requests[1:]) and len(server.requests) == 4
    assert result.metrics["judge_failure_rate"] == 0.0 and result.extra["format_refused"] is None


def test_a_plain_request_refused_too_is_an_error_not_a_remembered_refusal(tmp_path: Path) -> None:
    with JudgeServer(lambda req, n: Reply(status=400)) as server:
        with pytest.raises(JudgeError, match="HTTP 400"):
            _score(_cfg(server.base_url, workers=1), ROWS, tmp_path)
    assert ["response_format" in r for r in server.requests] == [True, False]


def test_structured_option_is_validated() -> None:
    from pydantic import ValidationError

    assert JudgeConfig(base_url="u", model="m").structured == "auto"
    assert JudgeConfig(base_url="u", model="m", structured=False).structured is False
    with pytest.raises(ValidationError):
        JudgeConfig(base_url="u", model="m", structured="sometimes")
