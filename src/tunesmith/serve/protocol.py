"""The OpenAI request bodies tunesmith serves (pydantic), and the reply objects built from events."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tunesmith.serve.sequence import Event, TokenInfo


class _Body(BaseModel):
    # unknown fields are ignored, as OpenAI-compatible servers do (clients send vendor extras)
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Body):
    type: str
    text: str | None = None


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    # an assistant turn's calls and a tool turn's answer id: rendered (and logged) as training renders them
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    model: str
    max_tokens: int | None = Field(None, ge=1)
    # unset: the served model's generation_config.json, else 1.0 (as vLLM's --generation-config does)
    temperature: float | None = Field(None, ge=0, le=2)  # below sequence.GREEDY_BELOW (1e-5): greedy
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1)
    stop: str | list[str] | None = None
    # a torch generator seed (each of n choices takes seed + its index): within a signed 64-bit range
    seed: int | None = Field(None, ge=-(2**63), lt=2**63 - 2**16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    user: str | None = None

    def stops(self) -> tuple[str, ...]:
        return tuple(s for s in ([self.stop] if isinstance(self.stop, str) else (self.stop or [])) if s)


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None  # 'none' | 'auto'; a forced call is refused (routes._tools)


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int]
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False
    response_format: dict[str, Any] | None = None


class FeedbackRequest(_Body):
    request_id: str = Field(min_length=1)
    rating: Literal["up", "down", 1, 2, 3, 4, 5, "1", "2", "3", "4", "5"]
    correction: str | None = None
    comment: str | None = None

    @field_validator("rating", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        """``true`` would pass as the star rating 1 (and ``1.0`` as 1): a thumbs-up stored as the lowest score."""
        if isinstance(value, (bool, float)):
            raise ValueError(f"must be 'up', 'down' or a star rating 1-5 (got {value!r})")
        return value

    def score(self) -> float:
        if self.rating in ("up", "down"):
            return 1.0 if self.rating == "up" else 0.0
        return (int(self.rating) - 1) / 4


class LoadAdapterRequest(_Body):
    lora_name: str = Field(min_length=1)
    lora_path: str = Field(min_length=1)


class UnloadAdapterRequest(_Body):
    lora_name: str = Field(min_length=1)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_logprobs(tokens: list[TokenInfo]) -> dict[str, Any]:
    """``bytes``: each token's own bytes (joined, a byte-level tokenizer's are the reply's UTF-8); ``token``: its text, or
    ``bytes:\\xe4\\xb8`` when it holds part of a character (as OpenAI writes it)."""
    return {"content": [
        {"token": t.text, "logprob": t.logprob, "bytes": list(t.bytes),
         "top_logprobs": [{"token": s, "logprob": v, "bytes": list(b)} for s, v, b in t.top]}
        for t in tokens]}


def completion_logprobs(tokens: list[TokenInfo], offset: int = 0) -> dict[str, Any]:
    """``text_offset``: where each token's text starts (part of a character: where that character starts)."""
    offsets, done = [], b""
    for t in tokens:
        offsets.append(offset + len(done.decode("utf-8", "ignore")))
        done += t.bytes
    return {"tokens": [t.text for t in tokens], "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [{s: v for s, v, _ in t.top} for t in tokens], "text_offset": offsets}


def envelope(kind: str, request_id: str, model: str, created: int | None = None) -> dict[str, Any]:
    return {"id": request_id, "object": kind, "created": created or int(time.time()), "model": model}


def chat_choice(index: int, text: str, finish: str | None, tokens: list[TokenInfo] | None) -> dict[str, Any]:
    return {"index": index, "message": {"role": "assistant", "content": text},
            "logprobs": chat_logprobs(tokens) if tokens is not None else None, "finish_reason": finish}


def chat_chunk_choice(event: Event, with_logprobs: bool) -> dict[str, Any]:
    delta: dict[str, Any] = {"content": event.text} if event.text or event.finish_reason is None else {}
    return {"index": event.index, "delta": delta,
            "logprobs": chat_logprobs(event.tokens) if with_logprobs else None,
            "finish_reason": event.finish_reason}


def completion_choice(index: int, text: str, finish: str | None, tokens: list[TokenInfo] | None,
                      offset: int = 0) -> dict[str, Any]:
    return {"index": index, "text": text, "finish_reason": finish,
            "logprobs": completion_logprobs(tokens, offset) if tokens is not None else None}

