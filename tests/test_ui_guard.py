"""``tunesmith ui``'s access guard against other web sites: ``Origin: null`` (sandboxed frames,
``data:`` pages) and, for requests without an Origin, ``Sec-Fetch-Site`` and ``Referer``."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tunesmith.ui import UIConfig, newrun, playground, review

pytest.importorskip("fastapi")

QUEUE = [{"id": "a", "request": "hi", "reply": "x", "verdict": None, "correction": None}]


def _client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object, list[str]]:
    """A dashboard on tmp_path whose actions only record that they ran (nothing is started or sent)."""
    from fastapi.testclient import TestClient

    from tunesmith.ui.app import create_app

    queue = tmp_path / "queue.jsonl"
    queue.write_text("".join(json.dumps(i) + "\n" for i in QUEUE))
    config = tmp_path / "c.yaml"
    config.write_text("base_model: tiny\n")
    calls: list[str] = []
    checked = SimpleNamespace(config=SimpleNamespace(output_dir=tmp_path / "out"), plan=None, plan_error="-", yaml="")
    monkeypatch.setattr(newrun, "check", lambda *a: calls.append("check") or checked)
    monkeypatch.setattr(newrun, "start", lambda *a, **k: calls.append("start") or (SimpleNamespace(pid=1), "log"))
    monkeypatch.setattr(playground, "chat", lambda *a, **k: calls.append("chat") or {})
    monkeypatch.setattr(playground, "feedback", lambda *a, **k: calls.append("feedback") or {})
    app = create_app(UIConfig(runs=tmp_path, queue=queue))
    return app, TestClient(app, base_url="http://127.0.0.1:7860"), calls


def _bodies(config: Path) -> dict[str, dict]:
    """A request each state-changing route would carry out."""
    return {"/api/review": {"json": {"id": "a", "verdict": "reject"}},
            "/new": {"data": {"config": str(config), "overrides": "", "action": "start"}},
            "/api/chat": {"json": {"messages": [{"role": "user", "content": "hi"}], "model": "m"}},
            "/api/feedback": {"json": {"request_id": "r1", "rating": "down"}}}


def _posts(app) -> set[str]:
    return {r.path for r in app.routes if "POST" in (getattr(r, "methods", None) or ())}


def test_origin_null_is_refused_on_every_state_changing_route_and_changes_nothing(tmp_path, monkeypatch):
    app, client, calls = _client(tmp_path, monkeypatch)
    bodies = _bodies(tmp_path / "c.yaml")
    assert _posts(app) == set(bodies)  # a new POST route needs a line here
    before = (tmp_path / "queue.jsonl").read_text()
    for path, body in bodies.items():
        refused = client.post(path, headers={"Origin": "null"}, **body)
        assert refused.status_code == 403 and "Origin null" in refused.json()["error"], path
    assert calls == [] and (tmp_path / "queue.jsonl").read_text() == before
    # the same requests from the dashboard's own pages go through
    for path, body in bodies.items():
        assert client.post(path, headers={"Origin": "http://127.0.0.1:7860"}, **body).status_code == 200, path
    assert calls == ["check", "start", "chat", "feedback"] and review.read(tmp_path / "queue.jsonl")[0]["verdict"] == "reject"


@pytest.mark.parametrize("headers", [{"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                                     {"Referer": "http://evil.example/page.html"}])
def test_a_post_without_origin_from_another_site_is_refused(tmp_path, monkeypatch, headers):
    app, client, calls = _client(tmp_path, monkeypatch)
    for path, body in _bodies(tmp_path / "c.yaml").items():
        refused = client.post(path, headers=headers, **body)
        assert refused.status_code == 403 and "cross-site" in refused.json()["error"], path
    assert calls == [] and review.read(tmp_path / "queue.jsonl")[0]["verdict"] is None
    # reading is not refused; neither is a POST from this dashboard's pages or without any of these headers
    assert client.get("/runs", headers=headers).status_code == 200
    same = {"Sec-Fetch-Site": "same-origin", "Referer": "http://127.0.0.1:7860/review"}
    assert client.post("/api/review", headers=same, json={"id": "a", "verdict": "skip"}).status_code == 200
    assert client.post("/api/review", json={"id": "a", "verdict": "accept"}).status_code == 200
