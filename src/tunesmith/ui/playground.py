"""The Playground: chat with a running ``tunesmith serve`` through its OpenAI-compatible API.

The browser talks to the UI, the UI to the server (same origin for the browser, the server's key
stays on this side). The server applies the model's own chat template and trained system prompt;
a thumbs up/down goes to its ``/v1/feedback`` with the reply's request id.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tunesmith.errors import TunesmithError

TIMEOUT_S = 120


def call(base_url: str, path: str, body: dict[str, Any] | None, key: str | None) -> tuple[dict[str, Any], str | None]:
    """One request to the server: (decoded body, the x-request-id header); errors name the server's message."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base_url.rstrip("/") + path, data=data, headers=headers,
                                     method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return json.loads(response.read()), response.headers.get("x-request-id")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except Exception:  # not the server's error body
            message = exc.reason
        raise TunesmithError(f"{base_url}{path}: HTTP {exc.code}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise TunesmithError(f"{base_url}: cannot reach the server ({getattr(exc, 'reason', exc)}); "
                             "start one with tunesmith serve MODEL") from None


def models(base_url: str, key: str | None) -> list[str]:
    body, _ = call(base_url, "/v1/models", None, key)
    return [m["id"] for m in body.get("data", [])]


def chat(base_url: str, key: str | None, model: str, messages: list[dict[str, Any]], *, max_tokens: int = 64,
         temperature: float = 0.0, schema: str = "") -> dict[str, Any]:
    """One chat completion; ``schema`` (JSON text) asks for replies that match that JSON schema."""
    body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens,
                            "temperature": temperature}
    if schema.strip():
        try:
            parsed = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise TunesmithError(f"JSON schema: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "playground", "schema": parsed}}
    reply, request_id = call(base_url, "/v1/chat/completions", body, key)
    choice = reply["choices"][0]
    return {"reply": choice["message"].get("content") or "", "finish_reason": choice.get("finish_reason"),
            "request_id": request_id, "usage": reply.get("usage")}


def feedback(base_url: str, key: str | None, request_id: str, rating: str, comment: str | None = None) -> dict[str, Any]:
    if rating not in ("up", "down"):
        raise TunesmithError(f"rating: must be up or down (got {rating!r})")
    body, _ = call(base_url, "/v1/feedback", {"request_id": request_id, "rating": rating, "comment": comment}, key)
    return body
