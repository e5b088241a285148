"""tunesmith serve through the real openai client against a real uvicorn server on 127.0.0.1 and a real SQLite file."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

from tunesmith import infer, serve  # noqa: E402
from tunesmith.data.records import Message  # noqa: E402

from serve_helpers import SYSTEM, build_adapter, build_served_model, error_of, http  # noqa: E402

SCHEMA = {"type": "object", "properties": {"label": {"enum": ["billing", "outage", "other"]}, "urgent": {"type": "boolean"}},
          "required": ["label", "urgent"], "additionalProperties": False}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    model = build_served_model(root / "tiny")
    adapters = root / "adapters"
    build_adapter(model, adapters / "support", seed=1, system_prompt="You triage tickets.")
    build_adapter(model, adapters / "spare", seed=2)
    config = serve.ServeConfig(model=str(model), served_model_name="tiny", port=0, db=root / "log.sqlite",
                               adapters={"support": adapters / "support"}, max_tokens_limit=512)
    with serve.start(config) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        yield server, client, root


def _greedy(folder, text, max_new_tokens, system=SYSTEM):
    loaded = infer.load(folder)
    return infer.generate(loaded.model, loaded.tokenizer, [[Message("user", text)]], eos_ids=loaded.eos_ids,
                          system_prompt=system, max_new_tokens=max_new_tokens)[0]


def test_chat_is_rendered_and_decoded_exactly_as_training_and_infer_do(setup):
    server, client, root = setup
    raw = client.chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": "what is the capital of france"}], max_tokens=12,
        temperature=0)
    reply = raw.parse()
    request_id = raw.headers["x-request-id"]
    assert reply.id == request_id and request_id.startswith("req-")
    text = reply.choices[0].message.content
    assert text.strip() == _greedy(root / "tiny", "what is the capital of france", 12)
    loaded = infer.load(root / "tiny")
    prompt = infer.prompt_ids(loaded.tokenizer, [Message("user", "what is the capital of france")], SYSTEM)
    assert reply.usage.prompt_tokens == len(prompt)  # the trained system prompt was added
    finish = reply.choices[0].finish_reason
    produced = len(loaded.tokenizer(text, add_special_tokens=False)["input_ids"]) + (finish == "stop")
    assert reply.usage.completion_tokens == (12 if finish == "length" else produced)
    row = next(r for r in serve.read_log(root / "log.sqlite") if r.id == request_id)
    assert (row.reply, row.finish_reason, row.system_prompt, row.prompt_tokens) == (text, finish, SYSTEM, len(prompt))
    assert row.messages == [{"role": "user", "content": "what is the capital of france"}]


def test_a_tool_conversation_is_rendered_as_the_same_training_row_would_be(setup):
    """An assistant turn that calls a tool (content null, OpenAI's tool_calls), the tool's answer, a developer turn
    and content parts: the prompt is the training render of the same conversation; the log keeps the calls."""
    from tunesmith.data.records import ToolCall

    server, client, root = setup
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    messages = [{"role": "developer", "content": [{"type": "text", "text": "Use the tools."}]},
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "18C"}]
    raw = client.chat.completions.with_raw_response.create(model="tiny", messages=messages, tools=tools, max_tokens=4,
                                                           temperature=0)
    loaded = infer.load(root / "tiny")
    trained = [Message("system", "Use the tools."), Message("user", "weather in Paris?"),
               Message("assistant", "", tool_calls=(ToolCall("get_weather", {"city": "Paris"}),)),
               Message("tool", "18C")]
    assert raw.parse().usage.prompt_tokens == len(infer.prompt_ids(loaded.tokenizer, trained, SYSTEM, tools))
    without_call = [*trained[:2], Message("assistant", ""), trained[3]]
    assert len(infer.prompt_ids(loaded.tokenizer, trained, SYSTEM, tools)) > \
        len(infer.prompt_ids(loaded.tokenizer, without_call, SYSTEM, tools))  # the call is in the render
    row = next(r for r in serve.read_log(root / "log.sqlite") if r.id == raw.headers["x-request-id"])
    assert row.messages[2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert row.messages[3]["tool_call_id"] == "c1"
    bad = [{"role": "user", "content": [{"type": "image_url", "text": None}]}]
    status, _, body = http("POST", server.url + "/v1/chat/completions", {"model": "tiny", "messages": bad})
    assert status == 400 and "messages[0].content[0].type 'image_url' is not supported" in error_of(json.loads(body))["message"]


def test_a_request_system_prompt_replaces_the_trained_one(setup):
    server, client, root = setup
    reply = client.chat.completions.create(model="tiny", max_tokens=4, temperature=0, messages=[
        {"role": "system", "content": "Be long."}, {"role": "user", "content": "hi"}])
    loaded = infer.load(root / "tiny")
    assert reply.usage.prompt_tokens == len(infer.prompt_ids(
        loaded.tokenizer, [Message("system", "Be long."), Message("user", "hi")]))
    row = next(r for r in serve.read_log(root / "log.sqlite") if r.id == reply.id)
    assert row.system_prompt is None


def test_stream_equals_the_whole_reply_and_reports_usage(setup):
    _, client, _ = setup
    kwargs = {"model": "tiny", "messages": [{"role": "user", "content": "write a poem"}], "max_tokens": 20,
              "temperature": 0}
    whole = client.chat.completions.create(**kwargs)
    chunks = list(client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        whole.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1


def test_concurrent_requests_batched_together_equal_one_at_a_time(setup):
    from concurrent.futures import ThreadPoolExecutor

    server, client, _ = setup
    prompts = ["hello", "what is the capital of france please", "thanks", "the quick brown fox jumps", "hi"] * 2

    def ask(text):
        return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": text}],
                                              max_tokens=10, temperature=0).choices[0].message.content

    alone = [ask(t) for t in prompts[:5]]
    steps = server.state.engine.steps
    with ThreadPoolExecutor(10) as pool:
        together = list(pool.map(ask, prompts))
    assert together == alone * 2
    assert server.state.engine.steps - steps < 10 * 10  # fewer forwards than one per token per request


def test_json_schema_reply_always_validates(setup):
    import jsonschema

    _, client, _ = setup
    fmt = {"type": "json_schema", "json_schema": {"name": "ticket", "schema": SCHEMA, "strict": True}}
    for seed in range(6):
        reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "the printer"}],
                                               max_tokens=60, temperature=1.0, seed=seed, response_format=fmt)
        choice = reply.choices[0]
        assert choice.finish_reason == "stop"
        jsonschema.validate(json.loads(choice.message.content), SCHEMA)
    free = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "the printer"}],
                                          max_tokens=60, temperature=1.0, seed=0)
    with pytest.raises(ValueError):  # the same model unconstrained does not write JSON
        json.loads(free.choices[0].message.content)


def test_json_object_reply_is_an_object(setup):
    _, client, _ = setup
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}],
                                           max_tokens=200, temperature=0, response_format={"type": "json_object"})
    text = reply.choices[0].message.content
    assert text.lstrip().startswith("{")
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)


def test_logprobs_seed_n_and_stop(setup):
    server, client, root = setup
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}],
                                           max_tokens=6, temperature=0, logprobs=True, top_logprobs=3)
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens
    for token in content:
        assert len(token.top_logprobs) == 3 and token.logprob == pytest.approx(token.top_logprobs[0].logprob)
    row = next(r for r in serve.read_log(root / "log.sqlite") if r.id == reply.id)
    assert row.mean_logprob == pytest.approx(sum(t.logprob for t in content) / len(content), rel=1e-5)
    kwargs = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 12,
              "temperature": 1.0, "n": 3}
    first = client.chat.completions.create(**kwargs, seed=7)
    again = client.chat.completions.create(**kwargs, seed=7)
    texts = [c.message.content for c in first.choices]
    assert texts == [c.message.content for c in again.choices] and len(set(texts)) > 1
    row = next(r for r in serve.read_log(root / "log.sqlite") if r.id == first.id)
    assert [c["text"] for c in row.choices] == texts
    assert first.usage.completion_tokens == sum(c["completion_tokens"] for c in row.choices)  # summed over choices
    cut = texts[0][3:5]
    stopped = client.chat.completions.create(**{**kwargs, "n": 1}, seed=7, stop=[cut])
    assert stopped.choices[0].message.content == texts[0][: texts[0].index(cut)]
    assert stopped.choices[0].finish_reason == "stop"


def test_completions_endpoint(setup):
    _, client, root = setup
    reply = client.completions.create(model="tiny", prompt="the quick brown", max_tokens=5, temperature=0,
                                      logprobs=2, echo=True)
    choice = reply.choices[0]
    assert choice.text.startswith("the quick brown") and len(choice.logprobs.tokens) == 5
    loaded = infer.load(root / "tiny")
    assert reply.usage.prompt_tokens == len(loaded.tokenizer("the quick brown")["input_ids"])


def test_adapters_answer_by_name_and_mix_in_one_batch(setup):
    from concurrent.futures import ThreadPoolExecutor

    server, client, root = setup
    names = {m.id: m for m in client.models.list().data}
    assert set(names) == {"tiny", "support"} and names["support"].parent == "tiny"
    expected = _greedy(root / "adapters" / "support", "the printer is broken", 10, system="You triage tickets.")

    def ask(model):
        return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "the printer is broken"}],
                                              max_tokens=10, temperature=0).choices[0].message.content

    assert ask("support").strip() == expected  # its own system prompt and weights
    assert ask("support") != ask("tiny")
    with ThreadPoolExecutor(6) as pool:
        mixed = list(pool.map(ask, ["tiny", "support"] * 3))
    assert mixed == [ask("tiny"), ask("support")] * 3
    row = next(r for r in reversed(serve.read_log(root / "log.sqlite")) if r.model == "support")
    assert row.adapter == "support" and row.system_prompt == "You triage tickets."


def test_adapters_load_and_unload_at_runtime_only_from_the_roots(setup, tmp_path):
    import shutil

    server, client, root = setup
    url = server.url
    status, _, body = http("POST", url + "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": str(tmp_path)})
    assert status == 403 and "roots" in error_of(json.loads(body))["message"]
    pickled = root / "adapters" / "pickled"
    shutil.copytree(root / "adapters" / "spare", pickled)
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    status, _, body = http("POST", url + "/v1/load_lora_adapter", {"lora_name": "p", "lora_path": str(pickled)})
    assert status == 400 and "safetensors" in error_of(json.loads(body))["message"]
    status, _, body = http("POST", url + "/v1/load_lora_adapter",
                           {"lora_name": "spare", "lora_path": str(root / "adapters" / "spare")})
    assert status == 200 and b"Success" in body
    assert "spare" in {m.id for m in client.models.list().data}
    answer = client.chat.completions.create(model="spare", messages=[{"role": "user", "content": "hi"}],
                                            max_tokens=8, temperature=0).choices[0].message.content
    assert answer.strip() == _greedy(root / "adapters" / "spare", "hi", 8)
    status, _, _ = http("POST", url + "/v1/unload_lora_adapter", {"lora_name": "spare"})
    assert status == 200
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="spare", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    status, _, _ = http("POST", url + "/v1/unload_lora_adapter", {"lora_name": "tiny"})
    assert status == 400


def test_a_refused_runtime_adapter_leaves_the_served_model_as_it_was(setup, tmp_path):
    """PEFT injects an adapter's layers into the model before it checks the file; a refused adapter must be
    taken out again. A server with no adapters yet (its first adapter wraps the plain model)."""
    import shutil

    from safetensors.torch import load_file, save_file

    _, _, root = setup
    holey = tmp_path / "adapters" / "holey"
    shutil.copytree(root / "adapters" / "spare", holey)
    weights = load_file(str(holey / "adapter_model.safetensors"))
    del weights[sorted(weights)[0]]
    save_file(weights, str(holey / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = serve.ServeConfig(model=str(root / "tiny"), served_model_name="plain", port=0, db=tmp_path / "log.sqlite",
                               adapter_roots=(tmp_path / "adapters",), max_tokens_limit=64)
    with serve.start(config) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)

        def answer():
            return client.chat.completions.create(model="plain", messages=[{"role": "user", "content": "hi"}],
                                                  max_tokens=8, temperature=0).choices[0].message.content

        before = answer()
        status, _, body = http("POST", server.url + "/v1/load_lora_adapter", {"lora_name": "h", "lora_path": str(holey)})
        error = error_of(json.loads(body))
        assert status == 400 and error["code"] == "adapter_incompatible" and "lacks tensors" in error["message"]
        assert answer() == before and {m.id for m in client.models.list().data} == {"plain"}


def test_a_refused_runtime_adapter_leaves_the_loaded_adapters_as_they_were(setup):
    """On a server that already serves an adapter, a refused one changes neither the base's nor that adapter's
    answers, is not listed, and leaves its name free for a sound adapter. (That its layers are deleted again is
    `test_models_load`'s to check: an inactive leftover adapter answers nothing here, so HTTP cannot see it.)"""
    import shutil

    from safetensors.torch import load_file, save_file

    server, client, root = setup
    holey = root / "adapters" / "holey"
    shutil.copytree(root / "adapters" / "spare", holey)
    weights = load_file(str(holey / "adapter_model.safetensors"))
    del weights[sorted(weights)[-1]]
    save_file(weights, str(holey / "adapter_model.safetensors"), metadata={"format": "pt"})

    def answers():
        return [client.chat.completions.create(model=m, messages=[{"role": "user", "content": "the printer is broken"}],
                                               max_tokens=8, temperature=0).choices[0].message.content
                for m in ("tiny", "support")]

    before = answers()
    status, _, body = http("POST", server.url + "/v1/load_lora_adapter", {"lora_name": "h", "lora_path": str(holey)})
    error = error_of(json.loads(body))
    assert status == 400 and error["code"] == "adapter_incompatible" and "lacks tensors" in error["message"]
    assert answers() == before and "h" not in {m.id for m in client.models.list().data}
    # nothing of it was kept: the name is free for a sound adapter, which then answers as itself
    status, _, body = http("POST", server.url + "/v1/load_lora_adapter",
                           {"lora_name": "h", "lora_path": str(root / "adapters" / "spare")})
    assert status == 200, body
    reply = client.chat.completions.create(model="h", messages=[{"role": "user", "content": "hi"}], max_tokens=8,
                                           temperature=0).choices[0].message.content
    assert reply.strip() == _greedy(root / "adapters" / "spare", "hi", 8)
    assert http("POST", server.url + "/v1/unload_lora_adapter", {"lora_name": "h"})[0] == 200
    assert answers() == before


def test_an_adapter_trained_on_other_base_weights_is_refused(setup, tmp_path):
    """Same shapes, other weights (another fine-tune of the same model): PEFT would serve it on this base."""
    import shutil

    from safetensors.torch import load_file, save_file

    server, client, root = setup
    other = tmp_path / "other-base"
    shutil.copytree(root / "tiny", other)
    weights = load_file(str(other / "model.safetensors"))
    weights["model.layers.0.mlp.up_proj.weight"] += 0.5
    save_file(weights, str(other / "model.safetensors"), metadata={"format": "pt"})
    foreign = build_adapter(other, root / "adapters" / "foreign", seed=3)
    status, _, body = http("POST", server.url + "/v1/load_lora_adapter", {"lora_name": "f", "lora_path": str(foreign)})
    error = error_of(json.loads(body))
    assert status == 400 and error["code"] == "adapter_incompatible", body
    assert f"trained on other base weights than {root / 'tiny'} holds" in error["message"]
    assert "f" not in {m.id for m in client.models.list().data}


def test_feedback_is_logged_against_its_request(setup):
    server, client, root = setup
    raw = client.chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    request_id = raw.headers["x-request-id"]
    for body in ({"request_id": request_id, "rating": "down", "correction": "Hello!", "comment": "rude"},
                 {"request_id": request_id, "rating": 4}):
        status, headers, _ = http("POST", server.url + "/v1/feedback", body)
        assert status == 200 and headers["x-request-id"].startswith("req-")
    row = next(r for r in serve.read_log(root / "log.sqlite") if r.id == request_id)
    assert [(f.rating, f.score, f.correction) for f in row.feedback] == [("down", 0.0, "Hello!"), ("4", 0.75, None)]
    assert row.score == pytest.approx(0.375)
    status, _, body = http("POST", server.url + "/v1/feedback", {"request_id": "req-nope", "rating": "up"})
    assert status == 404 and error_of(json.loads(body))["code"] == "request_not_found"
    status, headers, _ = http("POST", server.url + "/v1/chat/completions", {"model": "nope", "messages": [
        {"role": "user", "content": "hi"}]})
    assert status == 404  # refused, yet logged: a rating of it would be kept and never mined
    status, _, body = http("POST", server.url + "/v1/feedback", {"request_id": headers["x-request-id"], "rating": "up"})
    assert status == 409 and error_of(json.loads(body))["code"] == "request_refused"
    for rating in (9, True, 1.0):  # true passed as the star rating 1: a thumbs-up stored as the lowest score
        status, _, body = http("POST", server.url + "/v1/feedback", {"request_id": request_id, "rating": rating})
        assert status == 400 and error_of(json.loads(body))["param"] == "rating", (rating, body)
    assert len(next(r for r in serve.read_log(root / "log.sqlite") if r.id == request_id).feedback) == 2


@pytest.mark.parametrize("case", ["malformed", "unknown_model", "bad_schema", "bad_format_type", "oversized",
                                  "max_tokens", "context", "no_messages", "bad_role", "image_part", "seed"])
def test_bad_requests_get_4xx_with_an_openai_error_body(setup, case):
    server, client, root = setup
    ok = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    cases = {
        "malformed": (400, None, b'{"model": "tiny", "messages": [', None),
        "unknown_model": (404, "model", None, {**ok, "model": "tinny"}),
        "bad_schema": (400, "response_format.json_schema", None, {**ok, "response_format": {
            "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}}}),
        "bad_format_type": (400, "response_format.type", None, {**ok, "response_format": {"type": "xml"}}),
        "oversized": (413, None, None, {**ok, "messages": [{"role": "user", "content": "x" * 1_100_000}]}),
        "max_tokens": (400, "max_tokens", None, {**ok, "max_tokens": 100_000}),
        "context": (400, "messages", None, {**ok, "max_tokens": 500,
                                            "messages": [{"role": "user", "content": "hello there " * 300}]}),
        "no_messages": (400, "messages", None, {**ok, "messages": []}),
        "bad_role": (400, "messages.0.role", None, {**ok, "messages": [{"role": "robot", "content": "hi"}]}),
        "seed": (400, "seed", None, {**ok, "seed": 2**70, "n": 2}),  # past torch's range: was a 500
        "image_part": (400, "messages[0].content[0].type", None, {**ok, "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
    }
    status, param, raw, body = cases[case]
    got, headers, data = http("POST", server.url + "/v1/chat/completions", body, raw=raw)
    assert got == status, data
    error = error_of(json.loads(data))
    assert error["param"] == param and headers["x-request-id"].startswith("req-")
    if case == "unknown_model":
        assert "did you mean 'tiny'" in error["message"]
    logged = next(r for r in serve.read_log(root / "log.sqlite", status=None) if r.id == headers["x-request-id"])
    assert logged.status == status and logged.error == error["message"]
    assert client.chat.completions.create(**ok).choices[0].finish_reason in ("stop", "length")  # still serving


def test_a_request_without_max_tokens_stays_within_the_limit(setup, tmp_path):
    """The default reply length (256) was used even when --max-tokens-limit is lower."""
    _, _, root = setup
    config = serve.ServeConfig(model=str(root / "tiny"), served_model_name="tiny", port=0, db=tmp_path / "log.sqlite",
                               max_tokens_limit=5)
    with serve.start(config) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                               temperature=0)
    assert reply.usage.completion_tokens <= 5 and reply.choices[0].finish_reason in ("stop", "length")


def test_health_metrics_and_request_ids(setup):
    server, client, _ = setup
    status, headers, _ = http("GET", server.url + "/health")
    assert status == 200 and headers["x-request-id"].startswith("req-")
    client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    status, _, body = http("GET", server.url + "/metrics")
    text = body.decode()
    for name in ("tunesmith_requests_total{", "tunesmith_request_latency_seconds_bucket{",
                 "tunesmith_completion_tokens_total", "tunesmith_prompt_tokens_total", "tunesmith_queue_depth",
                 "tunesmith_active_sequences"):
        assert name in text, name
    line = next(x for x in text.splitlines() if x.startswith('tunesmith_requests_total{path="/v1/chat/completions",status="200"}'))
    assert float(line.split()[-1]) >= 1


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_stops_its_generation(setup, stream):
    import http.client
    from urllib.parse import urlsplit

    server, _, root = setup
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 500, "temperature": 1,
            "stream": stream}
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    if stream:
        response = conn.getresponse()
        request_id = response.getheader("x-request-id")
        response.fp.readline()  # the first event
    else:
        deadline = time.monotonic() + 60
        while not server.state.engine.active and time.monotonic() < deadline:
            time.sleep(0.01)
        request_id = None
    conn.sock.close()
    conn.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = [r for r in serve.read_log(root / "log.sqlite") if r.id == request_id or
                (request_id is None and r.params.get("max_tokens") == 500 and not r.params.get("stream"))]
        if rows and not server.state.engine.active:
            break
        time.sleep(0.05)
    assert rows and rows[-1].finish_reason == "cancelled" and rows[-1].completion_tokens < 500
