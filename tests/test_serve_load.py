"""Security settings, load, backpressure, chat --url, and kill -9 under load (every answered request is logged)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")

from tunesmith import serve  # noqa: E402

from conftest import TUNESMITH  # noqa: E402
from serve_helpers import build_served_model, error_of, http  # noqa: E402

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4, "temperature": 0}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_served_model(tmp_path_factory.mktemp("load") / "tiny")


def test_refuses_a_public_host_without_an_api_key(model, cli, tmp_path):
    result = cli("serve", str(model), "--host", "0.0.0.0", "--db", str(tmp_path / "x.sqlite"))
    assert result.returncode == 1 and "without an API key" in result.stderr and "Traceback" not in result.stderr
    result = cli("serve", str(model), "--adapter", "broken")
    assert result.returncode == 1 and "NAME=PATH" in result.stderr


def test_api_key_is_required_and_checked(model, tmp_path, monkeypatch):
    monkeypatch.setenv("TS_TEST_KEY", "s3cret")
    config = serve.ServeConfig(model=str(model), served_model_name="tiny", port=0, db=tmp_path / "log.sqlite",
                               api_key_env="TS_TEST_KEY")
    with serve.start(config) as server:
        url = server.url
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            status, _, body = http("POST", url + "/v1/chat/completions", CHAT, headers)
            assert status == 401 and error_of(body)["code"] == "invalid_api_key"
        assert http("GET", url + "/metrics")[0] == 401 and http("GET", url + "/health")[0] == 200
        status, _, _ = http("POST", url + "/v1/chat/completions", CHAT, {"Authorization": "Bearer s3cret"})
        assert status == 200
    assert [r.status for r in serve.read_log(tmp_path / "log.sqlite", status=None)] == [200]  # 401s not logged


def test_chat_url_talks_to_a_running_server(model, tmp_path, cli):
    config = serve.ServeConfig(model=str(model), served_model_name="tiny", port=0, db=tmp_path / "log.sqlite")
    with serve.start(config) as server:
        result = cli("chat", "--url", server.url, "--prompt", "hello", "--max-new-tokens", "6")
        rows = serve.read_log(tmp_path / "log.sqlite")
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip("\n") == rows[-1].reply and rows[-1].params["temperature"] == 0
    refused = cli("chat", "--url", "http://127.0.0.1:9", "--prompt", "hi")
    assert refused.returncode == 1 and "cannot connect" in refused.stderr


@pytest.mark.slow
def test_32_clients_x_20_requests_with_a_small_queue(model, tmp_path):
    config = serve.ServeConfig(model=str(model), served_model_name="tiny", port=0, db=tmp_path / "log.sqlite",
                               max_batch_size=8, max_queue=8)
    answered, refused, other = [], [], []
    with serve.start(config) as server:
        def client(k):
            for i in range(20):
                body = {**CHAT, "messages": [{"role": "user", "content": f"hello {k} {i}"}]}
                status, headers, data = http("POST", server.url + "/v1/chat/completions", body)
                if status == 200:
                    answered.append(headers["x-request-id"])
                elif status == 429:
                    assert headers["retry-after"] == "1" and error_of(data)["code"] == "queue_full"
                    refused.append(headers["x-request-id"])
                else:
                    other.append((status, data))

        with ThreadPoolExecutor(32) as pool:
            list(pool.map(client, range(32)))
        assert http("POST", server.url + "/v1/chat/completions", CHAT)[0] == 200  # the worker is alive
    assert other == [] and len(answered) + len(refused) == 640 and answered
    rows = {r.id: r.status for r in serve.read_log(tmp_path / "log.sqlite", status=None)}
    assert all(rows.get(i) == 200 for i in answered)  # 0 lost rows
    assert all(rows.get(i) == 429 for i in refused)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_kill_9_under_load_loses_no_answered_request(model, tmp_path):
    port, db = _free_port(), tmp_path / "log.sqlite"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([TUNESMITH, "serve", str(model), "--name", "tiny", "--port", str(port), "--db", str(db)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
        answered, stop = [], threading.Event()

        def client(k):
            i = 0
            while not stop.is_set() and i < 200:
                i += 1
                try:
                    status, headers, _ = http("POST", url + "/v1/chat/completions",
                                              {**CHAT, "messages": [{"role": "user", "content": f"hi {k} {i}"}]})
                except OSError:
                    return  # the server is gone
                if status == 200:
                    answered.append(headers["x-request-id"])

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        while len(answered) < 40 and all(t.is_alive() for t in threads):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        stop.set()
        for t in threads:
            t.join(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(answered) >= 40
    logged = {r.id for r in serve.read_log(db)}
    assert set(answered) <= logged, set(answered) - logged
