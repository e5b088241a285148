"""data synth: a scripted OpenAI-compatible teacher (and judge) on 127.0.0.1; every filter with its reason."""

from __future__ import annotations

import json
import re

import pytest
from judge_server import JudgeServer, Reply, user_text, verdict

from conftest import run_cli
from tunesmith.config.schema import DatasetSpec, JudgeConfig
from tunesmith.errors import TunesmithError
from tunesmith.flywheel.synth import SynthOptions, synth


def _variant(body) -> int:
    return int(re.search(r"variant (\d+)", user_text(body)).group(1))


@pytest.fixture
def seeds(tmp_path):
    path = tmp_path / "seeds.jsonl"
    rows = [("What is the capital of France?", "Paris"), ("Classify: the printer is broken", "hardware")]
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
                            + "\n" for q, a in rows))
    return path


def test_paraphrases_are_filtered_tagged_and_written(seeds, tmp_path):
    replies = {1: "Which city is the capital of France, please tell me?", 2: "Classify: the printer is broken",
               3: "", 4: "Please classify this ticket: my office printer stopped working today"}
    with JudgeServer(lambda body, n: Reply(200, replies[_variant(body)])) as server:
        teacher = JudgeConfig(base_url=server.base_url, model="teacher", max_retries=0, backoff=0)
        result = synth(SynthOptions(seeds=DatasetSpec(path=str(seeds)), out=tmp_path / "out", teacher=teacher, count=4))
        asked = {_variant(b): user_text(b) for b in server.requests}
    assert len(asked) == 4 and "What is the capital of France?" in asked[1] and "printer is broken" in asked[2]
    assert result.kept == 2 and result.rejected == {"teacher_reply": 1, "duplicate": 1}
    rows = [json.loads(line) for line in (tmp_path / "out" / "synth.jsonl").read_text().splitlines()]
    assert [(r["messages"][0]["content"], r["messages"][1]["content"]) for r in rows] == [
        (replies[1], "Paris"), (replies[4], "hardware")]
    assert rows[0]["meta"] == {"origin": "synth:paraphrase", "teacher": "teacher", "seed_row": f"{seeds}:1", "variant": 1}
    dropped = [json.loads(line) for line in (tmp_path / "out" / "synth_rejected.jsonl").read_text().splitlines()]
    assert {(d["reason"], d.get("variant")) for d in dropped} == {("teacher_reply", 3), ("duplicate", 2)}
    manifest = json.loads((tmp_path / "out" / "synth_manifest.json").read_text())
    assert manifest["kept"] == 2 and manifest["audit"]["rows"] == 2
    with pytest.raises(TunesmithError, match="synth.jsonl: a synthetic dataset already exists"):
        synth(SynthOptions(seeds=DatasetSpec(path=str(seeds)), out=tmp_path / "out", teacher=teacher, count=1))


def test_generated_rows_must_match_the_answer_schema_and_pass_the_judge(seeds, tmp_path):
    made = {1: {"instruction": "Classify: the screen flickers", "answer": '{"label": "hardware"}'},
            2: {"instruction": "Classify: cannot log in", "answer": "account"},  # not JSON
            3: {"instruction": "Classify: the invoice is wrong twice", "answer": '{"label": 7}'},  # wrong type
            4: {"instruction": "Classify: wifi drops every hour", "answer": '{"label": "network"}'}}

    def judge(body, n):
        bad = "wifi drops" in user_text(body)
        return Reply(200, verdict(1, 1, 1) if bad else verdict(5, 5, 5))

    schema = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}
    with JudgeServer(lambda body, n: Reply(200, "sure: " + json.dumps(made[_variant(body)]))) as teacher_server, \
            JudgeServer(judge) as judge_server:
        result = synth(SynthOptions(
            seeds=DatasetSpec(path=str(seeds)), out=tmp_path / "out", mode="generate", count=4, answer_schema=schema,
            teacher=JudgeConfig(base_url=teacher_server.base_url, model="teacher", max_retries=0),
            judge=JudgeConfig(base_url=judge_server.base_url, model="judge", max_retries=0)))
    from tunesmith.evaluate.judge import load_rubric, rubric_format

    # the judge is asked for the rubric's schema; the teacher writes free text
    assert [b.get("response_format") for b in judge_server.requests] == [rubric_format(load_rubric())] * 2
    assert not any("response_format" in b for b in teacher_server.requests)
    assert result.kept == 1 and result.rejected == {"format": 2, "judge": 1}
    rows = [json.loads(line) for line in (tmp_path / "out" / "synth.jsonl").read_text().splitlines()]
    assert rows[0]["messages"][0]["content"] == "Classify: the screen flickers"
    assert rows[0]["meta"]["origin"] == "synth:generate" and rows[0]["meta"]["judge_score"] == 5.0
    dropped = {d["variant"]: d["detail"] for d in
               map(json.loads, (tmp_path / "out" / "synth_rejected.jsonl").read_text().splitlines())}
    assert dropped[2].startswith("the answer is not valid JSON") and dropped[3] == "label: 7 is not of type 'string'"
    assert dropped[4] == "judge score 1.00 < 4.0"


def test_the_cli_runs_against_a_scripted_teacher(seeds, tmp_path):
    with JudgeServer(lambda body, n: Reply(200, f"Rephrased request number {_variant(body)} about capitals")) as server:
        done = run_cli("data", "synth", str(seeds), "--out", str(tmp_path / "o"), "--teacher-url", server.base_url,
                       "--teacher-model", "t", "--count", "3", "--mode", "paraphrase")
    assert done.returncode == 0, done.stderr
    assert "3 synthetic rows kept; dropped: none" in done.stdout
    bad = run_cli("data", "synth", str(seeds), "--out", str(tmp_path / "p"), "--teacher-url", "http://x/v1",
                  "--teacher-model", "t", "--mode", "remix")
    assert bad.returncode == 1 and "synth mode 'remix': must be one of paraphrase, generate" in bad.stderr
