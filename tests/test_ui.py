"""``tunesmith ui`` without a browser: the review queue file, run discovery and curves, the access
rules, and each page's HTML over a real HTTP request (FastAPI's test client)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.ui import UIConfig, review, runs

from conftest import run_main

pytest.importorskip("fastapi")


def make_run(root: Path, name: str, lr: float, status: str = "completed") -> Path:
    """A run directory as train leaves it, written by hand so every number is known."""
    path = root / name
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"method": "sft", "adapter": "lora", "status": status,
                                               "global_step": 3, "train_loss": 2.0, "best_eval_loss": 1.5}))
    (path / "config.yaml").write_text(f"base_model: tiny\nlearning_rate: {lr}\nmax_steps: 4\nlora:\n  r: 8\n")
    records = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5, "eval_loss": 2.25}, {"step": 3, "loss": 2.0}]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def queue_file(tmp_path: Path) -> Path:
    path = tmp_path / "queue.jsonl"
    items = [{"id": "a", "request": "hi", "reply": "x", "reason": "r", "cluster_size": 2, "verdict": None,
              "correction": None, "extra": [1, 2]},
             {"id": "b", "request": "yo", "reply": "y", "reason": "r", "cluster_size": 1, "verdict": None,
              "correction": None}]
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


def test_a_decision_rewrites_the_queue_atomically_and_keeps_other_keys(tmp_path):
    path = queue_file(tmp_path)
    review.decide(path, "b", "correct", "the right reply")
    review.decide(path, "a", "skip")
    items = review.read(path)
    assert [(i["id"], i["verdict"], i["correction"]) for i in items] == [("a", "skip", None),
                                                                       ("b", "correct", "the right reply")]
    assert items[0]["extra"] == [1, 2]
    assert [i["id"] for i in review.pending(items)] == ["a"]  # skipped items come back
    assert review.counts(items)["done"] == 1 and review.counts(items)["total"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".queue.jsonl.lock", "queue.jsonl"]  # no temporary file


def test_a_decision_waits_for_another_writer_holding_the_lock(tmp_path):
    import threading
    import time

    path = queue_file(tmp_path)
    with review.locked(path):  # e.g. the flywheel appending an item
        worker = threading.Thread(target=review.decide, args=(path, "a", "accept"))
        worker.start()
        time.sleep(0.3)
        assert worker.is_alive()  # blocked on the lock, not reading the old file
        with path.open("a") as fh:
            fh.write(json.dumps({"id": "c", "request": "r", "reply": "x"}) + "\n")
    worker.join(30)
    items = review.read(path)
    assert [(i["id"], i.get("verdict")) for i in items] == [("a", "accept"), ("b", None), ("c", None)]


def test_bad_queue_files_and_decisions_are_one_line_errors(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "a", "request": "r", "reply": "x"}\n{"id": "a", "request": "r", "reply": "y"}\n')
    with pytest.raises(TunesmithError, match=r"q.jsonl:2: id 'a' appears twice"):
        review.read(path)
    path.write_text('{"id": "a", "request": "r"}\nnot json\n')
    with pytest.raises(TunesmithError, match=r"q.jsonl:1: missing reply"):
        review.read(path)
    good = queue_file(tmp_path)
    with pytest.raises(TunesmithError, match="correction is empty"):
        review.decide(good, "a", "correct", "  ")
    with pytest.raises(TunesmithError, match="verdict: must be one of"):
        review.decide(good, "a", "maybe")
    with pytest.raises(TunesmithError, match="no item with id 'zz'"):
        review.decide(good, "zz", "accept")
    assert all(i["verdict"] is None for i in review.read(good))


def test_the_queue_flywheel_mine_writes_is_reviewed_as_is_and_read_back_by_the_flywheel(tmp_path):
    from fastapi.testclient import TestClient
    from flywheel_helpers import planted_log

    from tunesmith.flywheel import MineOptions, mine
    from tunesmith.flywheel.queue import load
    from tunesmith.ui.app import create_app

    mine(MineOptions(db=planted_log(tmp_path / "log.sqlite"), out=tmp_path / "mined", cluster_threshold=1.0))
    queue = tmp_path / "mined" / "queue.jsonl"
    mined = review.read(queue)
    assert mined and all("messages" in i and "request" not in i for i in mined)  # the flywheel's own shape
    client = TestClient(create_app(UIConfig(runs=tmp_path, queue=queue)), base_url="http://127.0.0.1:7860")
    listed = client.get("/api/review")
    assert listed.status_code == 200 and len(listed.json()["pending"]) == len(mined)
    first, second = mined[0]["id"], mined[1]["id"]
    assert client.post("/api/review", json={"id": first, "verdict": "accept"}).status_code == 200
    decided = client.post("/api/review", json={"id": second, "verdict": "correct", "correction": "bonjour"})
    assert decided.status_code == 200 and decided.json()["counts"]["done"] == 2
    back = load(queue)  # what `tunesmith flywheel build --reviewed` reads
    assert back.errors == [] and {(i["id"], i["verdict"]) for i in back.decided()} == {(first, "accept"),
                                                                                     (second, "correct")}
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "a", "reply": "x"}\n')
    with pytest.raises(TunesmithError, match=r"q.jsonl:1: missing request or messages"):
        review.read(path)


def test_runs_curves_progress_and_config_diff(tmp_path):
    a, b = make_run(tmp_path, "a", 0.01, status="running"), make_run(tmp_path / "nested", "b", 0.02)
    assert [r.name for r in runs.find(tmp_path)] == ["a", "nested/b"]
    assert runs.curves(a) == {"train loss": [(1.0, 3.0), (2.0, 2.5), (3.0, 2.0)], "eval loss": [(2.0, 2.25)]}
    assert runs.progress(a) == {"status": "running", "step": 3, "max_steps": 4, "fraction": 0.75, "loss": 2.0,
                                "points": 4}
    assert runs.config_diff(runs.config_of(a), runs.config_of(b)) == [("learning_rate", 0.01, 0.02)]
    with pytest.raises(TunesmithError, match="no run named"):
        runs.resolve(tmp_path, "../..")


def test_listening_beyond_loopback_needs_a_key_and_requests_need_it(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from tunesmith.ui.app import create_app

    with pytest.raises(TunesmithError, match="refusing to listen beyond this machine without an API key"):
        create_app(UIConfig(runs=tmp_path, host="0.0.0.0"))
    monkeypatch.setenv("UI_KEY", "s3cret")
    client = TestClient(create_app(UIConfig(runs=tmp_path, host="0.0.0.0", api_key_env="UI_KEY")))
    assert client.get("/runs").status_code == 401
    assert client.get("/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/login?key=wrong").status_code == 401
    assert client.get("/login?key=s3cret").status_code == 200  # follows the redirect with the cookie set
    assert client.get("/runs").status_code == 200


def test_other_sites_cannot_drive_the_dashboard(tmp_path):
    from fastapi.testclient import TestClient

    from tunesmith.ui.app import create_app

    queue = queue_file(tmp_path)
    client = TestClient(create_app(UIConfig(runs=tmp_path, queue=queue)), base_url="http://127.0.0.1:7860")
    posted = client.post("/api/review", json={"id": "a", "verdict": "reject"}, headers={"Origin": "http://evil.example"})
    assert posted.status_code == 403 and "cross-site" in posted.json()["error"]
    rebound = client.get("/runs", headers={"Host": "evil.example:7860"})
    assert rebound.status_code == 403 and "loopback only" in rebound.json()["error"]
    assert all(i["verdict"] is None for i in review.read(queue))
    same = client.post("/api/review", json={"id": "a", "verdict": "reject"}, headers={"Origin": "http://127.0.0.1:7860"})
    assert same.status_code == 200 and review.read(queue)[0]["verdict"] == "reject"


def test_pages_render_runs_curves_and_errors(tmp_path):
    from fastapi.testclient import TestClient

    from tunesmith.ui.app import create_app

    make_run(tmp_path, "a", 0.01)
    make_run(tmp_path, "b", 0.02)
    client = TestClient(create_app(UIConfig(runs=tmp_path, queue=queue_file(tmp_path))), base_url="http://localhost:7860")
    table = client.get("/runs").text
    assert 'data-run="a"' in table and 'data-run="b"' in table
    view = client.get("/runs/view?run=a").text
    assert view.count('class="point"') == 4 and 'data-x="2" data-y="2.25"' in view
    assert "learning_rate" in client.get("/runs/compare?a=a&b=b").text
    missing = client.get("/runs/view?run=nope")
    assert missing.status_code == 404 and "no run named &#39;nope&#39;" in missing.text
    decided = client.post("/api/review", json={"id": "a", "verdict": "accept"})
    assert decided.json()["counts"]["accept"] == 1
    bad = client.post("/api/review", json={"id": "b", "verdict": "correct", "correction": ""})
    assert bad.status_code == 400 and "correction is empty" in bad.json()["error"]
    form = client.post("/new", data={"config": str(tmp_path / "none.yaml"), "overrides": "", "action": "check"})
    assert form.status_code == 400 and "no such config file" in form.text


def test_cli_ui_refuses_a_missing_runs_folder_and_an_open_host_without_a_key(tmp_path):
    code, _, err = run_main("ui", "--runs", str(tmp_path / "nope"))
    assert code == 1 and "--runs" in err and "no such folder" in err
    code, _, err = run_main("ui", "--runs", str(tmp_path), "--host", "0.0.0.0")
    assert code == 1 and "refusing to listen beyond this machine without an API key" in err


def test_cli_ui_serves_the_runs_table(tmp_path):
    import os
    import socket
    import subprocess
    import time

    from conftest import TUNESMITH
    from serve_helpers import http

    make_run(tmp_path, "only_run", 0.01)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([TUNESMITH, "ui", "--runs", str(tmp_path), "--port", str(port)],
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                status, _, body = http("GET", f"http://127.0.0.1:{port}/runs")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
                time.sleep(0.2)
        assert status == 200 and b'data-run="only_run"' in body
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_data_views_are_recomputed_when_the_dataset_changes(tmp_path):
    import os

    from tunesmith.ui import data

    rows = tmp_path / "train.jsonl"
    rows.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"base_model: tiny\ndatasets:\n  - path: {rows}\n")
    (run / "run.json").write_text("{}")
    before = data.version(run)
    assert len(before) == 3  # config.yaml, run.json and the one dataset
    os.utime(rows, ns=(before[2] + 10**9, before[2] + 10**9))
    assert data.version(run) != before
