"""``tunesmith ui`` on run and evaluation files it cannot read (torn by a kill, hand-edited, written
by another tool): the runs table leaves such runs out, a page answers 400 naming the file; and what
the live progress shows for a run whose process is gone or whose length is set in epochs."""

from __future__ import annotations

import html
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith.ui import UIConfig, runs

pytest.importorskip("fastapi")

CONFIG = "base_model: tiny\nmax_steps: 10\n"
METRICS = '{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 2.5}\n'


def make_run(root: Path, name: str, record: object = None, config: str = CONFIG, metrics: str = METRICS) -> Path:
    path = root / name
    path.mkdir(parents=True)
    record = {"status": "completed", "global_step": 2} if record is None else record
    (path / "run.json").write_text(record if isinstance(record, str) else json.dumps(record))
    (path / "config.yaml").write_text(config)
    (path / "metrics.jsonl").write_text(metrics)
    return path


def client(root: Path):
    from fastapi.testclient import TestClient

    from tunesmith.ui.app import create_app

    return TestClient(create_app(UIConfig(runs=root)), base_url="http://127.0.0.1:7860")


def error_text(response) -> str:
    if response.headers["content-type"].startswith("application/json"):
        return response.json()["error"]
    return html.unescape(re.search(r'class="error" role="alert"[^>]*>(.*?)</div>', response.text, re.S).group(1))


@pytest.mark.parametrize("text", ["null", "[]", "3", '{"status": "runn'])
def test_the_runs_table_leaves_out_a_run_json_that_is_not_an_object(tmp_path, text):
    make_run(tmp_path, "good")
    make_run(tmp_path, "other", record=text)
    page = client(tmp_path).get("/runs")
    assert page.status_code == 200 and 'data-run="good"' in page.text and 'data-run="other"' not in page.text
    assert [r.name for r in runs.find(tmp_path)] == ["good"]


BROKEN = {  # name: (how the run is broken, the file and message the error names)
    "torn_record": ({"record": '{"status": "runn'}, r"bad/run\.json: not valid JSON"),
    "list_record": ({"record": "[1, 2]"}, r"bad/run\.json: expected a JSON object \(got list\)"),
    "yaml_error": ({"config": "base_model: tiny\nmax_steps: [10\n"}, r"bad/config\.yaml:\d+: not valid YAML"),
    "yaml_list": ({"config": "- a\n- b\n"}, r"bad/config\.yaml: expected a mapping of config keys"),
    "metrics_line": ({"metrics": METRICS + "[1, 2]\n"}, r"bad/metrics\.jsonl:3: expected a JSON object"),
    "metrics_step": ({"metrics": '{"step": "abc", "loss": 1.0}\n'}, r"bad/metrics\.jsonl: step: must be a whole"),
    "global_step": ({"record": {"status": "running", "global_step": "abc"}},
                    r"bad/run\.json: global_step: must be a whole number \(got 'abc'\)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_run_file_that_cannot_be_read_is_a_400_naming_it(tmp_path, case):
    broken, message = BROKEN[case]
    make_run(tmp_path, "good")
    make_run(tmp_path, "bad", **broken)
    c = client(tmp_path)
    assert c.get("/runs/view?run=good").status_code == 200
    urls = ["/runs/view?run=bad", "/api/progress?run=bad", "/runs/compare?a=good&b=bad", "/runs/compare?a=bad&b=good"]
    if case in ("metrics_step", "global_step"):  # only the progress reads step numbers
        urls = urls[:2]
    for url in urls:
        page = c.get(url)
        assert page.status_code == 400 and re.search(message, error_text(page)), (url, page.text[:300])
    assert c.get("/runs").status_code == 200


def test_a_torn_last_metrics_line_is_skipped(tmp_path):
    make_run(tmp_path, "killed", metrics=METRICS + '{"step": 3, "lo')
    progress = client(tmp_path).get("/api/progress?run=killed").json()
    assert progress["step"] == 2 and progress["loss"] == 2.5


def write_eval(folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    task = {"scorer": "exact_match", "n": 2, "main": "accuracy", "metrics": {"accuracy": 0.5}, "health": {}}
    (folder / f"eval_{name}.json").write_text(json.dumps({"name": name, "tasks": {"qa": task}}))
    rows = [{"task": "qa", "source": f"t.jsonl:{i}", "prompt": f"q{i}", "gold": "a", "output": "a" if i else "b",
             "correct": bool(i), "score": float(i)} for i in range(2)]
    (folder / f"generations_{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


EVAL_BROKEN = {
    "torn_eval": ("eval_tuned.json", lambda text: text[:15], r"e/eval_tuned\.json: not valid JSON"),
    "list_eval": ("eval_tuned.json", lambda text: "[]", r"e/eval_tuned\.json: expected a JSON object with tasks"),
    "torn_generation": ("generations_tuned.jsonl", lambda text: text + '{"task": "qa", "pro',
                        r"e/generations_tuned\.jsonl:3: not valid JSON"),
    "list_generation": ("generations_tuned.jsonl", lambda text: text + "[1]\n",
                        r"e/generations_tuned\.jsonl:3: expected a JSON object"),
    "torn_gate": ("gate.json", lambda text: "{", r"e/gate\.json: not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(EVAL_BROKEN))
def test_an_evaluation_file_that_cannot_be_read_is_a_400_naming_it(tmp_path, case):
    name, damage, message = EVAL_BROKEN[case]
    for n in ("base", "tuned"):
        write_eval(tmp_path / "e", n)
    (tmp_path / "e" / "gate.json").write_text(json.dumps({"passed": True, "failures": 0, "warnings": 0, "lines": []}))
    c = client(tmp_path)
    assert c.get("/eval").status_code == 200 and c.get("/eval?folder=e&filter=regressions").status_code == 200
    path = tmp_path / "e" / name
    path.write_text(damage(path.read_text()))
    for url in ("/eval", "/eval?folder=e&filter=failures", "/eval?folder=e&left=base&right=tuned"):
        page = c.get(url)
        assert page.status_code == 400 and re.search(message, error_text(page)), (url, page.text[-600:])
        assert 'id="pick"' in page.text  # the folder picker stays, to choose another folder


def dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(30)
    return process.pid


def test_a_run_whose_process_is_gone_shows_interrupted(tmp_path):
    here, dead = socket.gethostname(), dead_pid()
    cases = {"killed": ("running", here, dead, "interrupted"), "killed_starting": ("starting", here, dead, "interrupted"),
             "live": ("running", here, os.getpid(), "running"),
             "elsewhere": ("running", "another-host", dead, "running"),  # another machine's pid says nothing here
             "ended": ("completed", here, dead, "completed")}
    for name, (status, host, pid, _) in cases.items():
        make_run(tmp_path, name, {"status": status, "global_step": 1, "attempts": [{"pid": pid, "host": host}]})
    c = client(tmp_path)
    table = c.get("/runs").text
    for name, (*_, shown) in cases.items():
        assert c.get(f"/api/progress?run={name}").json()["status"] == shown, name
        assert f'data-run="{name}" data-status="{shown}"' in table, name
    page = c.get("/runs/view?run=killed").text
    assert 'data-status="interrupted"' in page and '<strong id="status">interrupted</strong>' in page  # no polling
    compare = c.get("/runs/compare?a=killed&b=live").text
    assert re.search(r"<td>interrupted</td>\s*<td>running</td>", compare)


def test_an_epoch_based_run_takes_its_step_target_from_the_recorded_schedule(tmp_path):
    epochs = "base_model: tiny\nmax_steps: -1\nnum_epochs: 3\n"
    metrics = "".join(json.dumps({"step": i, "loss": 2.0}) + "\n" for i in range(1, 151))
    make_run(tmp_path, "epochs", {"status": "running", "schedule": {"total_steps": 300}}, config=epochs, metrics=metrics)
    make_run(tmp_path, "starting", {"status": "running"}, config=epochs, metrics="")  # no schedule yet
    c = client(tmp_path)
    progress = c.get("/api/progress?run=epochs").json()
    assert (progress["max_steps"], progress["fraction"]) == (300, 0.5)
    page = c.get("/runs/view?run=epochs").text
    assert '<span id="of"> of 300</span>' in page and 'id="bar-box">' in page and "width: 50.0%" in page
    progress = c.get("/api/progress?run=starting").json()
    assert (progress["max_steps"], progress["fraction"]) == (None, None)
    assert 'id="bar-box" hidden>' in c.get("/runs/view?run=starting").text  # shown by the poll once it is known
