"""tunesmith serve when a request goes wrong: one failing sequence fails alone, every request is logged once
with what it generated. A real uvicorn server on 127.0.0.1 and a real SQLite file, as in test_serve_api."""

from __future__ import annotations

import json
import threading
import time

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

from tunesmith import serve  # noqa: E402
from tunesmith.serve.sequence import Seq  # noqa: E402

from serve_helpers import build_served_model, error_of, http  # noqa: E402

HELLO = [{"role": "user", "content": "hello"}]
FAILING_SEED = 4242  # the sequences the patched sampler fails


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    model = build_served_model(root / "tiny")
    config = serve.ServeConfig(model=str(model), served_model_name="tiny", port=0, db=root / "log.sqlite")
    with serve.start(config) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        yield server, client, root


def _row(root, request_id):
    rows = [r for r in serve.read_log(root / "log.sqlite", status=None) if r.id == request_id]
    assert len(rows) == 1, rows  # logged exactly once
    return rows[0]


@pytest.fixture
def failing_sampler(setup, monkeypatch):
    """Sampling raises for requests with seed FAILING_SEED; records which other sequences were in the batch."""
    server, _, _ = setup
    real, seen = Seq.choose, {"others": []}

    def choose(self, logits):
        if self.params.seed == FAILING_SEED:
            seen["others"] += [s for s in server.state.engine.active if s is not self]
            raise RuntimeError("sampling blew up")
        return real(self, logits)

    monkeypatch.setattr(Seq, "choose", choose)
    return seen


def test_a_temperature_below_1e_5_is_greedy(setup):
    """1e-40 passed validation, then 1/T overflowed the softmax: NaN probabilities, multinomial raised."""
    _, client, _ = setup
    greedy = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=12, temperature=0)
    for tiny in (1e-40, 1e-6):
        reply = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=12, temperature=tiny)
        assert reply.choices[0].message.content == greedy.choices[0].message.content


def test_a_sequence_whose_sampling_fails_fails_alone(setup, failing_sampler):
    """The engine's catch-all failed every active sequence: one bad request answered 500 to unrelated ones."""
    server, client, root = setup
    long = {"model": "tiny", "messages": HELLO, "max_tokens": 150, "temperature": 0}
    out = {}

    def bystander(stream):
        raw = client.chat.completions.with_raw_response.create(**long, stream=stream)
        out[stream, "id"] = raw.headers["x-request-id"]
        reply = raw.parse()
        out[stream] = ([c.choices[0].finish_reason for c in reply if c.choices and c.choices[0].finish_reason]
                       if stream else [reply.choices[0].finish_reason])

    threads = [threading.Thread(target=bystander, args=(s,)) for s in (True, False)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(server.state.engine.active) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    status, headers, body = http("POST", server.url + "/v1/chat/completions",
                                 {**long, "max_tokens": 5, "temperature": 1, "seed": FAILING_SEED})
    for t in threads:
        t.join(120)
    assert failing_sampler["others"], "the bystanders were not in the batch when the sequence failed"
    assert status == 500 and "sampling blew up" in error_of(body)["message"]
    assert out[True] == out[False] == ["length"]
    assert _row(root, out[True, "id"]).status == _row(root, out[False, "id"]).status == 200
    assert _row(root, headers["x-request-id"]).status == 500


def test_a_stream_that_fails_in_the_engine_is_logged(setup, failing_sampler):
    """The stream's error event went out, but no row was written: the request was missing from the log."""
    server, _, root = setup
    status, headers, body = http("POST", server.url + "/v1/chat/completions",
                                 {"model": "tiny", "messages": HELLO, "max_tokens": 5, "temperature": 1,
                                  "seed": FAILING_SEED, "stream": True})
    events = [line[len("data: "):] for line in body.decode().splitlines() if line.startswith("data: ")]
    assert status == 200 and "sampling blew up" in error_of(events[-2])["message"] and events[-1] == "[DONE]"
    row = _row(root, headers["x-request-id"])
    assert row.status == 500 and "sampling blew up" in row.error and row.finish_reason == "error"


def test_a_stream_cut_off_by_its_client_logs_what_it_generated(setup):
    """The row of a disconnected stream said completion_tokens 0 and no mean_logprob: only a finish event,
    which never came, filled them in."""
    import http.client
    from urllib.parse import urlsplit

    server, _, root = setup
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    body = {"model": "tiny", "messages": HELLO, "max_tokens": 400, "temperature": 1, "seed": 3, "stream": True}
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    request_id = response.getheader("x-request-id")
    received = 0
    while received < 6:  # the role chunk, then five with text
        received += response.fp.readline().startswith(b"data:")
    conn.sock.close()
    conn.close()
    deadline = time.monotonic() + 60
    while not [r for r in serve.read_log(root / "log.sqlite") if r.id == request_id] and time.monotonic() < deadline:
        time.sleep(0.05)
    row = _row(root, request_id)
    assert row.finish_reason == "cancelled" and 5 <= row.completion_tokens < 400
    assert row.mean_logprob is not None and row.mean_logprob < 0
    assert row.choices[0]["completion_tokens"] == row.completion_tokens


def test_logprobs_bytes_are_each_tokens_own_bytes(setup):
    """A token holding part of a UTF-8 character was decoded alone: U+FFFD as its text, EF BF BD as its bytes."""
    _, client, _ = setup
    schema = {"type": "object", "properties": {"x": {"type": "string", "pattern": "^[中😀]{2}$"}}, "required": ["x"],
              "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    reply = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=40, temperature=0, logprobs=True,
                                           top_logprobs=3, response_format=fmt)
    choice = reply.choices[0]
    assert choice.finish_reason == "stop" and len(json.loads(choice.message.content)["x"]) == 2
    tokens = choice.logprobs.content
    assert b"".join(bytes(t.bytes) for t in tokens) == choice.message.content.encode() + b"<|im_end|>"
    partial = [t for t in tokens if t.token.startswith("bytes:")]
    assert partial and all(t.token == "bytes:" + "".join(f"\\x{b:02x}" for b in t.bytes) for t in partial)
    for t in tokens:
        assert "\ufffd" not in t.token and all("\ufffd" not in top.token for top in t.top_logprobs)
        assert all(bytes(top.bytes).decode("utf-8", "replace") == top.token or top.token.startswith("bytes:")
                   for top in t.top_logprobs)
    text = client.completions.create(model="tiny", prompt="hello", max_tokens=40, temperature=0, logprobs=2,
                                     extra_body={"response_format": fmt}).choices[0]
    whole = [(t, at) for t, at in zip(text.logprobs.tokens, text.logprobs.text_offset)
             if not t.startswith("bytes:") and t != "<|im_end|>"]
    assert len(whole) < len(text.logprobs.tokens) and all("\ufffd" not in t for t in text.logprobs.tokens)
    assert all(text.text[at : at + len(t)] == t for t, at in whole)  # offsets count characters, not tokens


def test_tool_choice_none_renders_no_tools_and_a_forced_call_is_refused(setup):
    """tool_choice was ignored: 'none' still showed the tools, 'required' and a named (even unknown) function
    were answered as 'auto'."""
    server, client, root = setup
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    ask = {"model": "tiny", "messages": [{"role": "user", "content": "weather in paris?"}], "max_tokens": 2,
           "temperature": 0}

    def prompt_tokens(**extra):
        return client.chat.completions.create(**ask, **extra).usage.prompt_tokens

    plain = prompt_tokens()
    assert prompt_tokens(tools=tools, tool_choice="none") == plain
    assert prompt_tokens(tools=tools, tool_choice="auto") == prompt_tokens(tools=tools) > plain
    for choice, says in (("required", "not supported"),
                         ({"type": "function", "function": {"name": "get_weather"}}, "not supported"),
                         ({"type": "function", "function": {"name": "nope"}}, "'nope' is not in tools ('get_weather')"),
                         ("sometimes", "must be 'none', 'auto'")):
        status, headers, body = http("POST", server.url + "/v1/chat/completions",
                                     {**ask, "tools": tools, "tool_choice": choice})
        error = error_of(body)
        assert status == 400 and error["param"] == "tool_choice" and says in error["message"], (choice, error)
        assert _row(root, headers["x-request-id"]).status == 400
