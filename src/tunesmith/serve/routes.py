"""The two generation endpoints: request -> validated ``Generation`` -> JSON reply or SSE stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tunesmith.serve import protocol as p
from tunesmith.serve.errors import APIError
from tunesmith.serve.grammar import compile_format
from tunesmith.serve.handlers import Generation, sse
from tunesmith.serve.models import ServedModel
from tunesmith.serve.sequence import Params
from tunesmith.serve.state import State

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat_completions(body: p.ChatRequest, request: Request) -> Any:
    state: State = request.app.state.tunesmith
    served = state.models.get(body.model)
    if body.top_logprobs and not body.logprobs:
        raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
    messages = _messages(body.messages)
    prompt = _render(served, messages, _tools(body))
    has_system = any(m.role == "system" for m in messages)
    params = _params(state, served, body, len(prompt), body.max_completion_tokens or body.max_tokens,
                     (body.top_logprobs or 0) if body.logprobs else None, body.response_format)
    fields = {"messages": json.dumps([m.model_dump(exclude_none=True) for m in body.messages]),
              "system_prompt": None if has_system else served.system_prompt,
              "params": _log_params(body, params)}
    gen = Generation(state, request.state.request_id, "chat.completions", served, [prompt], params, body.n, fields,
                     body.stream)
    await gen.start()
    if body.stream:
        return _stream(gen, body, request, _chat_chunks(gen, body))
    await gen.collect(_disconnected(request))
    await gen.log()
    reply = p.envelope("chat.completion", gen.request_id, served.name)
    reply["choices"] = [p.chat_choice(i, c.text, c.finish_reason, c.tokens if body.logprobs else None)
                        for i, c in enumerate(gen.choices)]
    reply["usage"] = gen.usage()
    return JSONResponse(reply)


@router.post("/v1/completions")
async def completions(body: p.CompletionRequest, request: Request) -> Any:
    state: State = request.app.state.tunesmith
    served = state.models.get(body.model)
    prompts = _prompts(served, body.prompt)
    params = _params(state, served, body, max(len(x) for x in prompts), body.max_tokens, body.logprobs,
                     body.response_format)
    fields = {"prompt": json.dumps(body.prompt), "params": _log_params(body, params)}
    gen = Generation(state, request.state.request_id, "completions", served, prompts, params, body.n, fields,
                     body.stream)
    by_ids = isinstance(body.prompt, list) and isinstance(body.prompt[0], int)
    texts = [served.tokenizer.decode(x) for x in prompts] if by_ids else _texts(body.prompt)
    await gen.start()
    if body.stream:
        return _stream(gen, body, request, _completion_chunks(gen, body, texts))
    await gen.collect(_disconnected(request))
    await gen.log()
    reply = p.envelope("text_completion", gen.request_id, served.name)
    reply["choices"] = []
    for i, c in enumerate(gen.choices):
        echo = texts[i // body.n] if body.echo else ""
        tokens = c.tokens if body.logprobs is not None else None
        reply["choices"].append(p.completion_choice(i, echo + c.text, c.finish_reason, tokens, len(echo)))
    reply["usage"] = gen.usage()
    return JSONResponse(reply)


def _params(state: State, served: ServedModel, body: p.CompletionRequest | p.ChatRequest, longest_prompt: int,
            max_tokens: int | None, logprobs: int | None, response_format: dict[str, Any] | None) -> Params:
    config, max_len = state.config, state.models.max_len
    if body.n > config.max_n:
        raise APIError(400, f"n: at most {config.max_n} (got {body.n})", param="n")
    if body.presence_penalty or body.frequency_penalty:
        raise APIError(400, "presence_penalty and frequency_penalty are not supported (use 0)",
                       param="presence_penalty")
    if max_tokens is not None and max_tokens > config.max_tokens_limit:
        raise APIError(400, f"max_tokens: at most {config.max_tokens_limit} (got {max_tokens})", param="max_tokens")
    room = max_len - longest_prompt
    if room < 1 or (max_tokens is not None and max_tokens > room):
        raise APIError(400, f"This model's maximum context length is {max_len} tokens; the prompt has "
                       f"{longest_prompt} and max_tokens asks for {max_tokens or 1} more",
                       param="messages", code="context_length_exceeded")
    stops = body.stops()
    if len(stops) > 4:
        raise APIError(400, "stop: at most 4 sequences", param="stop")
    grammar = compile_format(response_format)  # cached per schema text, see grammar.py
    temperature = served.sampling.get("temperature", 1.0) if body.temperature is None else body.temperature
    top_p = served.sampling.get("top_p", 1.0) if body.top_p is None else body.top_p
    return Params(max_tokens=max_tokens or min(config.default_max_tokens, config.max_tokens_limit, room),
                  temperature=temperature, top_p=top_p, seed=body.seed, stop=() if grammar else stops,
                  logprobs=logprobs, grammar=grammar)


def _tools(body: p.ChatRequest) -> list[dict[str, Any]]:
    """The tools the prompt shows: all of them for ``tool_choice`` 'auto' (the default), none for 'none'. A
    forced call ('required', a named function) is refused: the reply is whatever the model writes, call or not."""
    choice, tools = body.tool_choice, body.tools or []
    if choice in (None, "auto", "none"):
        return [] if choice == "none" else tools
    function = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
    if choice == "required" or isinstance(function, dict):
        names = [t["function"].get("name") for t in tools if isinstance(t.get("function"), dict)]
        name = function.get("name") if isinstance(function, dict) else None
        if function is not None and name not in names:
            raise APIError(400, f"tool_choice: the function {name!r} is not in tools "
                           f"({', '.join(map(repr, names)) or 'none given'})", param="tool_choice")
        raise APIError(400, f"tool_choice {json.dumps(choice)} is not supported: this server does not force a tool "
                       "call (use 'auto' or 'none')", param="tool_choice")
    raise APIError(400, "tool_choice: must be 'none', 'auto', 'required' or "
                   '{"type": "function", "function": {"name": ...}}', param="tool_choice")


def _log_params(body: Any, params: Params) -> str:
    kept = body.model_dump(exclude={"model", "messages", "prompt", "stream_options"}, exclude_none=True)
    kept.update(max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p)  # as sampled
    return json.dumps(kept)


def _messages(messages: list[p.ChatMessage]) -> list[Any]:
    """The request's messages through the parser training data goes through (``data.messages``): the same roles
    (``developer`` is the system turn), text parts, an assistant's ``tool_calls`` and reasoning, so a conversation
    renders exactly as the same conversation in a training file would."""
    from tunesmith.data.messages import parse_messages, request_context
    from tunesmith.data.rows import FieldError

    try:
        return list(parse_messages([m.model_dump(exclude_none=True) for m in messages], "messages", request_context()))
    except FieldError as exc:
        raise APIError(400, str(exc), param=exc.field) from None


def _render(served: ServedModel, messages: list[Any], tools: Any) -> list[int]:
    from tunesmith import infer
    from tunesmith.errors import TunesmithError

    try:
        return infer.prompt_ids(served.tokenizer, messages, served.system_prompt, tools)
    except TunesmithError as exc:
        raise APIError(400, f"messages: the chat template rejected them: {exc}", param="messages") from None


def _texts(prompt: str | list[Any]) -> list[str]:
    return [prompt] if isinstance(prompt, str) else [x if isinstance(x, str) else "" for x in prompt]


def _prompts(served: ServedModel, prompt: str | list[Any]) -> list[list[int]]:
    if isinstance(prompt, list) and prompt and all(isinstance(x, int) for x in prompt):
        if any(not 0 <= x < len(served.tokenizer) for x in prompt):
            raise APIError(400, "prompt: token id outside the vocabulary", param="prompt")
        return [list(prompt)]
    texts = _texts(prompt)
    if not texts or not all(texts):
        raise APIError(400, "prompt: must be a non-empty string, list of strings or list of token ids",
                       param="prompt")
    return [list(served.tokenizer(t)["input_ids"]) for t in texts]


def _disconnected(request: Request) -> asyncio.Future[Any]:
    """Completes when the client closes the connection (the body has been read, so receive() waits for that)."""
    async def wait() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    return asyncio.ensure_future(wait())


def _stream(gen: Generation, body: Any, request: Request, chunks: AsyncIterator[bytes]) -> StreamingResponse:
    async def events() -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                yield chunk
        except APIError as exc:  # the engine failed this request after the 200 went out: logged with the error
            await gen.log(error=exc)
            yield sse(exc.body())
        except BaseException:  # the client went away (cancelled): stop generating, keep the row
            gen.cancel()
            gen.cut_off()
            await gen.log(wait=False)
            raise
        else:
            await gen.log()
            if body.stream_options and body.stream_options.include_usage:
                kind = "chat.completion.chunk" if gen.endpoint == "chat.completions" else "text_completion"
                yield sse({**p.envelope(kind, gen.request_id, gen.served.name), "choices": [], "usage": gen.usage()})
        yield sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _chat_chunks(gen: Generation, body: p.ChatRequest) -> AsyncIterator[bytes]:
    head = p.envelope("chat.completion.chunk", gen.request_id, gen.served.name)
    for i in range(len(gen.choices)):  # the role first, as OpenAI does
        yield sse({**head, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                        "logprobs": None, "finish_reason": None}]})
    async for event in gen.events_until_done():
        yield sse({**head, "choices": [p.chat_chunk_choice(event, body.logprobs)]})


async def _completion_chunks(gen: Generation, body: p.CompletionRequest, texts: list[str]) -> AsyncIterator[bytes]:
    head = p.envelope("text_completion", gen.request_id, gen.served.name)
    if body.echo:
        for i in range(len(gen.choices)):
            yield sse({**head, "choices": [p.completion_choice(i, texts[i // body.n], None, None)]})
    async for event in gen.events_until_done():
        tokens = event.tokens if body.logprobs is not None else None
        yield sse({**head, "choices": [p.completion_choice(event.index, event.text, event.finish_reason, tokens)]})
