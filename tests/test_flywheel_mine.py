"""flywheel mine: every signal on a planted request log, clustering, ranking, bad databases."""

from __future__ import annotations

import json
import sqlite3

import pytest
from flywheel_helpers import feedback, planted_log, request, write_log

from tunesmith.errors import TunesmithError
from tunesmith.flywheel import SIGNALS, MineOptions, mine


def _kinds(result):
    return {rid: sorted(item["signals"]) for item in result.items for rid in item["request_ids"]}


def test_every_signal_is_found_with_its_reason(tmp_path):
    db = planted_log(tmp_path / "log.sqlite")
    result = mine(MineOptions(db=db, out=tmp_path / "mined", cluster_threshold=1.0))
    assert set(SIGNALS) == {"thumbs_down", "correction", "format_failure", "judge_score", "low_confidence", "refusal"}
    assert _kinds(result) == {
        "down": ["thumbs_down"], "corr": ["correction", "thumbs_down"], "badjson": ["format_failure"],
        "schema": ["format_failure"], "unsure": ["low_confidence"], "refuse": ["refusal"]}
    assert result.requests == 10 and result.flagged == 6
    assert result.signals == {"thumbs_down": 2, "correction": 1, "format_failure": 2, "low_confidence": 1, "refusal": 1}
    by_id = {i["request_ids"][0]: i for i in result.items}
    assert "not valid JSON (cut at max_tokens)" in by_id["badjson"]["reasons"][0]
    assert by_id["schema"]["reasons"] == ["response_format json_schema: (root): 'city' is a required property"]
    assert by_id["corr"]["suggestion"] == "bonjour" and by_id["corr"]["severity"] == 1.0
    assert by_id["unsure"]["reasons"] == ["mean token logprob -3.000 <= -1.5"]
    positives = [json.loads(line) for line in (tmp_path / "mined" / "positives.jsonl").read_text().splitlines()]
    assert [p["meta"]["request_id"] for p in positives] == ["liked", "sure", "goodjson"]
    assert positives[0]["messages"] == [{"role": "user", "content": "add 2 and 3"}, {"role": "assistant", "content": "5"}]
    mined = json.loads((tmp_path / "mined" / "mine.json").read_text())
    assert mined["requests"] == 10 and set(mined["items"]) == {i["id"] for i in result.items}


def test_a_reply_that_did_not_end_by_itself_is_never_a_positive(tmp_path):
    """Cut at max_tokens, or abandoned by the client: confident or liked, it would still teach stopping mid-sentence."""
    rows = [request("cut", "write a long story about a dragon", "Once upon a time there", logprob=-0.1, finish="length"),
            request("gone", "explain photosynthesis in detail", "Photosynthesis is the", logprob=-0.2, finish="cancelled"),
            request("liked_cut", "summarise the meeting notes", "The meeting covered", logprob=-2.0, finish="length"),
            request("whole", "spell cat backwards", "tac", logprob=-0.1)]
    db = write_log(tmp_path / "log.sqlite", rows, [feedback("liked_cut", "up", 1.0)])
    mine(MineOptions(db=db, out=tmp_path / "mined"))
    positives = [json.loads(line) for line in (tmp_path / "mined" / "positives.jsonl").read_text().splitlines()]
    assert [p["meta"]["request_id"] for p in positives] == ["whole"]


def test_near_duplicates_cluster_and_clusters_rank_by_size_times_severity(tmp_path):
    rows = [request(f"q{i}", f"what is the capital city of france today {x}", "berlin", created=1000.0 + i)
            for i, x in enumerate(["please", "please", "thanks", "please", "now"])]
    rows += [request("other", "translate good morning into german", "bonjour", created=1100.0),
             request("conf", "how many moons does mars have exactly", "three", logprob=-2.5, created=1101.0)]
    fb = [feedback(f"q{i}", "down", 0.0) for i in range(5)] + [feedback("other", "down", 0.0, correction="guten morgen")]
    result = mine(MineOptions(db=write_log(tmp_path / "log.sqlite", rows, fb), out=tmp_path / "mined",
                              cluster_threshold=0.5))
    sizes = [(i["size"], i["priority"], i["request_ids"][0]) for i in result.items]
    # 5 x 0.8 (thumbs-down) > 1 x 1.0 (correction) > 1 x 0.4 (low confidence)
    assert sizes == [(5, 4.0, "q0"), (1, 1.0, "other"), (1, 0.4, "conf")]
    assert [i["rank"] for i in result.items] == [1, 2, 3]
    assert result.items[0]["signals"] == {"thumbs_down": 5} and len(result.items[0]["members"]) == 4


def test_signal_settings_and_selection(tmp_path):
    db = planted_log(tmp_path / "log.sqlite")
    result = mine(MineOptions(db=db, out=tmp_path / "a", kinds=("low_confidence",),
                              settings={"low_confidence": {"max_mean_logprob": -0.5}}))
    assert sorted(_kinds(result)) == ["badjson", "corr", "down", "liked", "neutral", "refuse", "schema", "unsure"]  # -0.8 <= -0.5
    with pytest.raises(TunesmithError, match="unknown signal"):
        mine(MineOptions(db=db, out=tmp_path / "b", kinds=("vibes",)))
    with pytest.raises(TunesmithError, match=r"low_confidence\.max_logprob: unknown key"):
        mine(MineOptions(db=db, out=tmp_path / "c", settings={"low_confidence": {"max_logprob": 1}}))


def test_judge_scores_below_the_threshold_are_failures(tmp_path):
    from judge_server import JudgeServer, Reply

    from tunesmith.config.schema import JudgeConfig

    def script(body, n):
        bad = "it rains" in body["messages"][-1]["content"]
        score = 1 if bad else 5
        return Reply(200, json.dumps({"correctness": score, "completeness": score, "format": score,
                                      "hallucination": False, "reason": "r"}))

    db = write_log(tmp_path / "log.sqlite", [request("a", "weather in oslo", "it rains"),
                                              request("b", "two plus two", "four", created=1001.0)])
    with JudgeServer(script) as server:
        result = mine(MineOptions(db=db, out=tmp_path / "mined",
                                  judge=JudgeConfig(base_url=server.base_url, model="judge", backoff=0)))
        formats = [b.get("response_format") for b in server.requests]
    assert _kinds(result) == {"a": ["judge_score"]}
    from tunesmith.evaluate.judge import load_rubric, rubric_format

    assert formats == [rubric_format(load_rubric())] * 2  # the verdict is asked for as the rubric's schema
    assert result.items[0]["reasons"] == ["judge score 1.00 < 3"]


def test_a_log_of_another_schema_version_is_refused_by_name(tmp_path):
    db = planted_log(tmp_path / "log.sqlite")
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO schema_migrations VALUES (7, 'future', 0)")
    conn.commit()
    conn.close()
    with pytest.raises(TunesmithError, match=r"log\.sqlite: request log schema version 7 .*newer tunesmith"):
        mine(MineOptions(db=db, out=tmp_path / "mined"))
    old = tmp_path / "old.sqlite"
    conn = sqlite3.connect(old)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied REAL)")
    conn.close()
    with pytest.raises(TunesmithError, match=r"old\.sqlite: request log schema version 0 .*older tunesmith"):
        mine(MineOptions(db=old, out=tmp_path / "mined"))
    (tmp_path / "notdb.sqlite").write_text("hello")
    with pytest.raises(TunesmithError, match="not a tunesmith request log"):
        mine(MineOptions(db=tmp_path / "notdb.sqlite", out=tmp_path / "mined"))


def test_mining_never_replaces_a_queue_without_overwrite(tmp_path):
    db = planted_log(tmp_path / "log.sqlite")
    mine(MineOptions(db=db, out=tmp_path / "mined"))
    (tmp_path / "mined" / "queue.jsonl").write_text("reviewed work\n")
    with pytest.raises(TunesmithError, match="queue.jsonl: a mined queue already exists; pass --overwrite"):
        mine(MineOptions(db=db, out=tmp_path / "mined"))
    assert (tmp_path / "mined" / "queue.jsonl").read_text() == "reviewed work\n"
    mine(MineOptions(db=db, out=tmp_path / "mined", overwrite=True))


def test_since_keeps_later_requests(tmp_path):
    db = planted_log(tmp_path / "log.sqlite")
    result = mine(MineOptions(db=db, out=tmp_path / "mined", since=1004.0))
    assert sorted(_kinds(result)) == ["refuse", "unsure"]
