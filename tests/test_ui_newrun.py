"""The New run page's Start: pressed twice (a double click, a reload re-posting the form) it must not
start a second training into the same output_dir while the first one runs."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

from tunesmith.ui import UIConfig, newrun

pytest.importorskip("fastapi")

ROW = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'


def _start(client, config: Path, output_dir: str):
    return client.post("/new", data={"config": str(config), "overrides": f"output_dir={output_dir}", "action": "start"})


def _pid(page) -> int:
    return int(re.search(r"\(pid (\d+)\)", page.text).group(1))


def test_start_twice_into_one_output_dir_is_refused_while_the_first_training_lives(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from tunesmith.ui.app import create_app

    (tmp_path / "d.jsonl").write_text(ROW)
    config = tmp_path / "c.yaml"
    config.write_text("base_model: tiny\ndatasets:\n  - path: d.jsonl\n")
    # a stand-in for `tunesmith train` that lives until it is killed
    monkeypatch.setattr(newrun, "train_command", lambda *a: [sys.executable, "-c", "import time; time.sleep(120)"])
    client = TestClient(create_app(UIConfig(runs=tmp_path)), base_url="http://127.0.0.1:7860")
    out = tmp_path / "runs" / "one"
    started = []
    try:
        first = _start(client, config, str(out))
        assert first.status_code == 200 and 'id="started"' in first.text
        started.append(newrun._STARTED[out.resolve()][0])
        for again in (str(out), f"{out.parent}/../runs/./one"):  # the same folder, spelled twice
            refused = _start(client, config, again)
            assert refused.status_code == 400 and 'id="started"' not in refused.text
            assert f"already started a training into it (pid {_pid(first)}, still running" in refused.text
        other = _start(client, config, str(tmp_path / "runs" / "two"))  # another output_dir is not held up
        assert other.status_code == 200
        started.append(newrun._STARTED[(tmp_path / "runs" / "two").resolve()][0])
        started[0].kill()
        deadline = time.monotonic() + 30
        while started[0].returncode is None and time.monotonic() < deadline:  # the UI's wait thread reaps it
            time.sleep(0.05)
        after = _start(client, config, str(out))  # the first one ended: starting again is allowed
        assert after.status_code == 200 and _pid(after) != _pid(first)
        started.append(newrun._STARTED[out.resolve()][0])
    finally:  # (a stand-in left behind by a failed assertion also ends by itself after 120 s)
        started += [p for key, (p, _) in newrun._STARTED.items() if key.is_relative_to(tmp_path.resolve())]
        for process in started:
            process.kill()
            process.wait(30)
