"""`tunesmith serve` and `tunesmith chat` on the command line: start-up refusals and the lines they print."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import time

import pytest

pytest.importorskip("fastapi")

from tunesmith import serve  # noqa: E402
from tunesmith.errors import TunesmithError  # noqa: E402

from conftest import TUNESMITH  # noqa: E402
from serve_helpers import build_served_model, http  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_served_model(tmp_path_factory.mktemp("cli") / "tiny", max_positions=64)


def test_a_max_model_len_past_the_trained_positions_is_refused(model, cli, tmp_path):
    """It was accepted; then a long prompt raised (learned positions: IndexError, a 500) or was answered from
    past the trained context (rotary positions)."""
    result = cli("serve", str(model), "--port", "0", "--db", str(tmp_path / "x.sqlite"), "--max-model-len", "256",
                 timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    error = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error) == 1 and "256" in error[0] and "max_position_embeddings (64)" in error[0], result.stderr
    config = serve.ServeConfig(model=str(model), port=0, db=tmp_path / "y.sqlite", max_model_len=65)
    with pytest.raises(TunesmithError, match="65 is larger than the model's max_position_embeddings"):
        serve.start(config)
    for asked, served in ((None, 64), (32, 32)):
        config = serve.ServeConfig(model=str(model), port=0, db=tmp_path / "z.sqlite", max_model_len=asked)
        with serve.start(config) as server:
            assert server.state.models.max_len == served


def _lines_until(proc, pattern, seconds=120):
    """stderr lines of ``proc`` up to the first that matches ``pattern`` (or its exit)."""
    lines, buffer, deadline = [], b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.2)
        if ready:
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                break
            buffer += chunk
            *done, buffer = buffer.split(b"\n")
            lines += [line.decode() for line in done]
            if any(re.search(pattern, line) for line in lines):
                break
    return lines


def test_the_serving_line_names_the_bound_port_and_a_busy_port_is_one_error(model, cli, tmp_path):
    """The line was printed before binding, with the configured port: --port 0 printed :0; a busy port printed
    it, then uvicorn's raw error, and exited 3."""
    proc = subprocess.Popen([TUNESMITH, "serve", str(model), "--port", "0", "--db", str(tmp_path / "a.sqlite")],
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        lines = _lines_until(proc, r"^serving ")
        found = [re.search(r"^serving tiny on (http://127\.0\.0\.1:(\d+))/v1 ", line) for line in lines]
        url, port = next(((m.group(1), int(m.group(2))) for m in found if m), (None, 0))
        assert port > 0, lines
        assert http("GET", url + "/health")[0] == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        result = cli("serve", str(model), "--port", str(busy), "--db", str(tmp_path / "b.sqlite"), timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip() and "warn" not in line.lower()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot listen on 127.0.0.1:%d" % busy), result.stderr


def test_chat_url_with_an_empty_system_sends_no_system_turn(model, cli, tmp_path):
    """--system "" sent an empty system turn, which the server refuses (HTTP 400: messages[0].content is
    empty); chat with neither a folder nor --url said 'not both'."""
    config = serve.ServeConfig(model=str(model), served_model_name="tiny", port=0, db=tmp_path / "log.sqlite")
    with serve.start(config) as server:
        empty = cli("chat", "--url", server.url, "--system", "", "-p", "hello", "--max-new-tokens", "4")
        given = cli("chat", "--url", server.url, "--system", "Be terse.", "-p", "hello", "--max-new-tokens", "4")
        rows = serve.read_log(tmp_path / "log.sqlite")
    assert empty.returncode == 0 and given.returncode == 0, empty.stderr + given.stderr
    assert [r.messages for r in rows] == [[{"role": "user", "content": "hello"}],
                                         [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hello"}]]
    neither = cli("chat", "-p", "hello")
    assert neither.returncode == 1 and "give a model folder or --url (one of them is required)" in neither.stderr
    both = cli("chat", str(model), "--url", server.url, "-p", "hello")
    assert both.returncode == 1 and "not both" in both.stderr
