"""``tunesmith ui`` in a real browser: headless Chromium (Playwright) drives every page on tiny runs
trained here, a real ``tunesmith serve`` on 127.0.0.1 and a real queue file. Each test writes a
screenshot (to $TUNESMITH_SCREENSHOTS: `make screenshots` refreshes docs/screenshots/, which the
README shows; otherwise to a temporary folder)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import TUNESMITH
from serve_helpers import build_served_model, http
from ui_helpers import SCREENSHOTS_ENV, browser_or_skip, train_runs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    pw, browser = browser_or_skip()
    yield browser
    browser.close()
    pw.stop()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, browser) -> Path:
    root = tmp_path_factory.mktemp("ui")
    train_runs(root)
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory, browser):
    """A real ``tunesmith serve`` process on a tiny chatml model; yields (url, db)."""
    root = tmp_path_factory.mktemp("served")
    model = build_served_model(root / "model")
    port, db = _free_port(), root / "log.sqlite"
    proc = subprocess.Popen([TUNESMITH, "serve", str(model), "--name", "tiny", "--port", str(port), "--db", str(db)],
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                if http("GET", url + "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
            time.sleep(0.2)
        yield url, db
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.fixture(scope="module")
def ui(workspace, served):
    from tunesmith import ui

    config = ui.UIConfig(runs=workspace / "runs", port=0, serve_url=served[0])
    with ui.start(config) as server:
        yield server.url


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(browser, shots):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.shots = shots
    yield page
    page.close()


def shot(page, name: str) -> None:
    path = page.shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def metrics_points(run_dir: Path) -> int:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return sum(1 for r in records for k in ("loss", "eval_loss") if isinstance(r.get(k), (int, float)))


def test_runs_table_curve_with_points_and_compare(page, ui, workspace):
    page.goto(ui + "/runs")
    names = page.locator("#runs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert names == ["run_a", "run_b"]
    assert page.locator("#runs tr[data-run=run_a]").inner_text().count("completed") == 1
    passed = json.loads((workspace / "runs" / "run_a" / "eval" / "gate.json").read_text())["passed"]
    assert ("pass" if passed else "fail") in page.locator("#runs tr[data-run=run_a] .badge").inner_text()
    assert page.locator("#runs tr[data-run=run_b] .badge").count() == 0  # never gated
    shot(page, "runs")
    page.click("text=run_a")
    page.wait_for_url("**/runs/view?run=run_a")
    points = page.locator("#curve svg circle.point")
    expected = metrics_points(workspace / "runs" / "run_a")
    assert expected >= 9 and points.count() == expected  # 6 train losses + 3 eval losses, each a marker
    steps = sorted({float(x) for x in points.evaluate_all("ps => ps.map(p => p.dataset.x)")})
    assert steps == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    shot(page, "run")
    page.goto(ui + "/runs")
    page.click("text=Compare A with B")
    page.wait_for_url("**/runs/compare?*")
    assert page.locator("#curve svg g.points").count() == 4  # train + eval loss of both runs
    diff = page.locator("#diff").inner_text()
    assert "learning_rate" in diff and "0.01" in diff and "0.003" in diff
    shot(page, "compare")


def test_a_running_run_updates_live(page, ui, workspace):
    run = workspace / "runs" / "zz_live"
    run.mkdir()
    (run / "config.yaml").write_text("max_steps: 4\n")
    (run / "run.json").write_text(json.dumps({"method": "sft", "status": "running", "global_step": 0}))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 3.0}) + "\n")
    page.goto(ui + "/runs/view?run=zz_live")
    assert page.locator("#status").inner_text() == "running" and page.locator("#curve circle.point").count() == 1
    with (run / "metrics.jsonl").open("a") as fh:  # the trainer logs two more steps and finishes
        fh.write(json.dumps({"step": 2, "loss": 2.0}) + "\n" + json.dumps({"step": 4, "loss": 1.0}) + "\n")
    (run / "run.json").write_text(json.dumps({"method": "sft", "status": "completed", "global_step": 4}))
    page.wait_for_function("document.getElementById('status').textContent === 'completed'", timeout=20_000)
    assert page.locator("#step").inner_text() == "4" and page.locator("#curve circle.point").count() == 3
    assert page.locator("#bar").evaluate("bar => bar.style.width") == "100%"


def test_an_epoch_based_run_gets_its_bar_live_and_a_killed_one_ends_interrupted(page, ui, workspace):
    run = workspace / "runs" / "zz_epochs"
    run.mkdir()
    (run / "config.yaml").write_text("max_steps: -1\nnum_epochs: 2\n")
    (run / "run.json").write_text(json.dumps({"method": "sft", "status": "starting"}))
    (run / "metrics.jsonl").write_text("")
    page.goto(ui + "/runs/view?run=zz_epochs")
    assert page.locator("#bar-box").is_hidden()  # no step target before training begins
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 3.0}) + "\n")
    record = {"method": "sft", "status": "running", "schedule": {"total_steps": 4},
              "attempts": [{"pid": os.getpid(), "host": socket.gethostname()}]}
    (run / "run.json").write_text(json.dumps(record))
    page.wait_for_function("document.getElementById('of').textContent === ' of 4'", timeout=20_000)
    assert page.locator("#bar-box").is_visible() and page.locator("#bar").evaluate("b => b.style.width") == "25%"
    gone = subprocess.Popen(["true"])
    gone.wait(30)
    (run / "run.json").write_text(json.dumps({**record, "attempts": [{"pid": gone.pid, "host": socket.gethostname()}]}))
    page.wait_for_function("document.getElementById('status').textContent === 'interrupted'", timeout=20_000)


def test_evaluate_page_gate_and_filters(page, ui, workspace):
    page.goto(ui + "/eval")
    gate = json.loads((workspace / "runs" / "run_a" / "eval" / "gate.json").read_text())
    assert ("PASSED" if gate["passed"] else "FAILED") in page.locator("#gate-verdict").inner_text()
    assert page.locator("#gate tbody tr").count() == len(gate["lines"])
    total = page.locator("#generations .example").count()
    assert total == 6  # every test row of the color task, base beside tuned
    shot(page, "evaluate")
    eval_dir = workspace / "runs" / "run_a" / "eval"
    tuned = [json.loads(line) for line in (eval_dir / "generations_tuned.jsonl").read_text().splitlines()]
    base = {r["prompt"]: r for r in map(json.loads, (eval_dir / "generations_base.jsonl").read_text().splitlines())}
    expected = {"failures": sum(1 for r in tuned if not r["correct"]),
                "regressions": sum(1 for r in tuned if base[r["prompt"]]["score"] > r["score"])}
    for name, count in expected.items():
        page.select_option("select[name=filter]", name)
        page.click("#pick button[type=submit]")
        page.wait_for_url(f"**filter={name}**")
        assert page.locator("#generations .example").count() == count
        assert page.locator("#shown").inner_text().startswith(f"{count} of {count} row(s) ({name}")


def test_data_page_audit_drilldown_and_trained_tokens(page, ui):
    page.goto(ui + "/data?run=run_a")
    duplicate = page.locator("details.finding", has_text="duplicate")
    assert duplicate.count() >= 1
    duplicate.first.locator("summary").click()
    assert "\"content\": \"color the the\"" in duplicate.first.inner_text()  # the offending row, drilled down
    trained = page.locator(".tokens[data-row='0'] .trained").all_inner_texts()
    assert "".join(trained).strip().startswith("red")  # only the reply (and its end-of-turn) is trained
    assert "color" not in "".join(trained)
    shot(page, "data")


def test_review_decisions_typed_in_the_browser_land_in_the_queue_file(page, ui, workspace):
    queue = workspace / "runs" / "review_queue.jsonl"
    page.goto(ui + "/review")
    page.wait_for_selector("#item:not([hidden])")
    assert page.locator("#item-id").text_content().startswith("q1")
    shot(page, "review")
    page.keyboard.press("a")
    page.wait_for_function("document.getElementById('item-id').textContent.startsWith('q2')")
    assert json.loads(queue.read_text().splitlines()[0])["verdict"] == "accept"
    page.keyboard.press("c")
    page.keyboard.type("dog")
    page.keyboard.press("Control+Enter")
    page.wait_for_function("document.getElementById('item-id').textContent.startsWith('q3')")
    page.keyboard.press("r")
    page.wait_for_selector("#done:not([hidden])")
    items = [json.loads(line) for line in queue.read_text().splitlines()]
    assert [(i["id"], i["verdict"], i["correction"]) for i in items] == [
        ("q1", "accept", None), ("q2", "correct", "dog"), ("q3", "reject", None)]
    assert items[0]["reason"] == "thumbs down" and items[1]["cluster_size"] == 7  # other keys kept
    assert page.locator("#progress-line").inner_text() == "3 of 3 decided"


def test_playground_chat_reply_and_thumbs_up_reach_the_server(page, ui, served):
    page.goto(ui + "/playground")
    assert page.locator("#model option").all_inner_texts() == ["tiny"]
    page.fill("#prompt", "hello there")
    page.click("#send")
    reply = page.locator(".msg.assistant pre")
    reply.wait_for(timeout=60_000)
    page.click(".msg.assistant .rate-up")
    page.wait_for_selector(".rated")
    shot(page, "playground")
    page.click("text=JSON schema mode")
    page.fill("#schema", "{not json")
    page.fill("#prompt", "again")
    page.click("#send")
    page.wait_for_selector("#chat-error:not([hidden])")
    assert page.locator("#chat-error").inner_text().startswith("JSON schema: not valid JSON (line 1, column 2")
    assert page.locator(".msg.assistant").count() == 1
    with sqlite3.connect(served[1]) as db:
        logged = db.execute("SELECT reply FROM requests WHERE status = 200").fetchall()
        ratings = db.execute("SELECT rating FROM feedback").fetchall()
    assert (reply.inner_text(),) in logged and ratings == [("up",)]


def test_new_run_shows_plan_and_form_errors_in_the_page(page, ui, workspace):
    import yaml

    from ui_helpers import run_config

    config = workspace / "new.yaml"
    config.write_text(yaml.safe_dump(run_config(workspace, workspace / "base", "run_c")))
    page.goto(ui + "/new")
    page.fill("#config", str(workspace / "missing.yaml"))
    page.click("#check")
    assert "no such config file" in page.locator("#form-error").inner_text()
    page.fill("#config", str(config))
    page.fill("#overrides", "lora_r=-1")
    page.click("#check")
    assert "lora_r" in page.locator("#form-error").inner_text()
    page.fill("#overrides", "max_steps=2")
    page.click("#check")
    assert page.locator("#form-error").count() == 0
    assert "max_steps: 2" in page.locator("#resolved").inner_text()
    assert "GiB" in page.locator("#peak").inner_text()
    shot(page, "new_run")
    page.click("#start")
    assert "Started" in page.locator("#started").inner_text()
    record = workspace / "runs" / "run_c" / "run.json"
    deadline = time.monotonic() + 300
    log = workspace / "runs" / ".ui-logs" / "run_c.log"
    while not (record.is_file() and json.loads(record.read_text()).get("status") == "completed"):
        output = log.read_text() if log.is_file() else ""
        failed = any(line.startswith(("error:", "internal error:")) for line in output.splitlines())
        assert not failed and time.monotonic() < deadline, output
        time.sleep(1)
    page.goto(ui + "/runs")
    assert "completed" in page.locator("#runs tr[data-run=run_c]").inner_text()
    assert json.loads(record.read_text())["global_step"] == 2  # the override reached the training
