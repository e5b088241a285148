"""``tunesmith chat --url``: the OpenAI chat API over HTTP (standard library only, streamed)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from tunesmith.errors import TunesmithError


def remote_reply(url: str, model: str | None, api_key_env: str | None, system: str | None,
                 max_tokens: int) -> tuple[Callable[..., str], str]:
    """A reply function for ``chat`` that asks the server at ``url``; the server applies the template."""
    base = url.rstrip("/")
    base = base if base.endswith("/v1") else base + "/v1"
    headers = {"Content-Type": "application/json"}
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise TunesmithError(f"--api-key-env {api_key_env}: the environment variable is empty or unset")
        headers["Authorization"] = f"Bearer {key}"
    name = model or _first_model(base, headers)

    def reply(history: list[Any], stream: Callable[[str], None] | None) -> str:
        # an empty --system sends no system turn (the API refuses an empty one); the server then applies its
        # default, for tunesmith serve the trained system prompt
        messages = [{"role": "system", "content": system}] if system else []
        messages += [{"role": m.role, "content": m.content} for m in history]
        body = {"model": name, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True}
        parts = []
        for event in _sse(_open(f"{base}/chat/completions", headers, body)):
            for choice in event.get("choices", []):
                piece = (choice.get("delta") or {}).get("content") or ""
                parts.append(piece)
                if stream is not None and piece:
                    stream(piece)
        return "".join(parts)

    return reply, f"{name} at {base}"


def _first_model(base: str, headers: dict[str, str]) -> str:
    with _open(f"{base}/models", headers, None) as response:
        data = json.loads(response.read()).get("data") or []
    if not data:
        raise TunesmithError(f"{base}/models: the server lists no model")
    return str(data[0]["id"])


def _open(url: str, headers: dict[str, str], body: dict[str, Any] | None) -> Any:
    data = json.dumps(body).encode("utf-8") if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        return urllib.request.urlopen(request, timeout=600)
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except Exception:
            message = exc.reason
        raise TunesmithError(f"{url}: HTTP {exc.code}: {message}") from None
    except urllib.error.URLError as exc:
        raise TunesmithError(f"{url}: cannot connect ({exc.reason}); is `tunesmith serve` running?") from None


def _sse(response: Any) -> Any:
    with response:
        for raw in response:
            line = raw.decode("utf-8").strip()
            if not line.startswith("data:"):
                continue
            payload = line[len("data:"):].strip()
            if payload == "[DONE]":
                return
            event = json.loads(payload)
            if "error" in event:
                raise TunesmithError(f"server error: {event['error'].get('message')}")
            yield event
