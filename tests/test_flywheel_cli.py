"""The flywheel CLI end to end on a real server (127.0.0.1) and its real SQLite log."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from serve_helpers import build_served_model, http

from tunesmith import serve


@pytest.fixture(scope="module")
def served_log(tmp_path_factory):
    """Requests to a real server: three near-duplicate thumbs-down, one correction, one JSON request, one liked."""
    root = tmp_path_factory.mktemp("fw")
    model = build_served_model(root / "tiny")
    config = serve.ServeConfig(model=str(model), served_model_name="tiny", port=0, db=root / "log.sqlite")
    ids = {}
    with serve.start(config) as server:
        def ask(name, text, **extra):
            status, headers, body = http("POST", server.url + "/v1/chat/completions", {
                "model": "tiny", "messages": [{"role": "user", "content": text}], "max_tokens": 6, "temperature": 0,
                **extra})
            assert status == 200, body
            ids[name] = headers["x-request-id"]

        def rate(name, rating, correction=None):
            status, _, body = http("POST", server.url + "/v1/feedback",
                                   {"request_id": ids[name], "rating": rating, "correction": correction})
            assert status == 200, body

        for n, tail in enumerate(["please", "now", "please"]):
            ask(f"dup{n}", f"what is the capital city of france {tail}")
            rate(f"dup{n}", "down")
        ask("fix", "translate good morning into german")
        rate("fix", "1", correction="guten morgen")
        ask("json", "the city as json", response_format={"type": "json_object"}, max_tokens=3)
        # a reply that ends by itself (the grammar is complete), as a positive must: the tiny model never stops
        ask("liked", "say hello", response_format={"type": "json_schema", "json_schema": {
            "name": "greeting", "schema": {"enum": ["hello"]}}})
        rate("liked", "up")
    return root, ids


@pytest.mark.slow
def test_mine_review_import_and_build_from_a_served_log(served_log, tmp_path):
    root, ids = served_log
    mined = tmp_path / "mined"
    done = run_cli("flywheel", "mine", "--db", str(root / "log.sqlite"), "--out", str(mined),
                   "--cluster-threshold", "0.5", "--signal", "thumbs_down", "--signal", "correction")
    assert done.returncode == 0, done.stderr
    assert "6 requests, 4 flagged, 2 review items, 1 positives" in done.stdout
    items = [json.loads(line) for line in (mined / "queue.jsonl").read_text().splitlines()]
    assert [(i["size"], i["priority"]) for i in items] == [(3, 2.4), (1, 1.0)]  # 3 x 0.8 before 1 x 1.0
    assert set(items[0]["request_ids"]) == {ids["dup0"], ids["dup1"], ids["dup2"]}
    assert items[1]["suggestion"] == "guten morgen"
    items[0].update(verdict="correct", correction="Paris")
    items[1].update(verdict="correct", correction=items[1]["suggestion"])
    (mined / "queue.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items) + "not json\n")
    done = run_cli("flywheel", "review", str(mined / "queue.jsonl"), "--import")
    assert done.returncode == 1 and "queue.jsonl:3: not valid JSON" in done.stderr
    assert "2 items kept (accept 0, correct 2" in done.stdout and "Traceback" not in done.stderr
    base = tmp_path / "base.jsonl"
    base.write_text(json.dumps({"messages": [{"role": "user", "content": "count to three"},
                                             {"role": "assistant", "content": "1 2 3"}]}) + "\n")
    args = ["flywheel", "build", "--reviewed", str(mined / "reviewed.jsonl"), "--base-data", str(base),
            "--positives", str(mined / "positives.jsonl"), "--positives-share", "0.5", "--replay-ratio", "0.2",
            "--out", str(tmp_path / "data")]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "data" / "train.jsonl").read_text().splitlines()]
    assert [(r["messages"][-1]["content"], r["meta"]["origin"]) for r in rows] == [
        ("Paris", "flywheel:correction"), ("guten morgen", "flywheel:correction"),
        (rows[2]["messages"][-1]["content"], "flywheel:positive"), ("1 2 3", "replay")]
    assert rows[2]["messages"][0]["content"] == "say hello"
    again = run_cli(*args)
    assert again.returncode == 1 and "already exists; pass --overwrite" in again.stderr


def test_mine_names_a_wrong_database(tmp_path):
    (tmp_path / "x.sqlite").write_text("not sqlite at all")
    done = run_cli("flywheel", "mine", "--db", str(tmp_path / "x.sqlite"), "--out", str(tmp_path / "m"))
    assert done.returncode == 1 and "x.sqlite: not a tunesmith request log" in done.stderr
    assert "Traceback" not in done.stderr
