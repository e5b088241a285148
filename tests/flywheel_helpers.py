"""Request logs for the flywheel tests: real SQLite files written through the serving stage's log writer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith.serve.log import RequestLog


def request(rid: str, prompt: str, reply: str, *, created: float = 1000.0, logprob: float | None = -0.8,
            params: dict[str, Any] | None = None, finish: str = "stop") -> dict[str, Any]:
    """One logged chat request (as serve/handlers.py writes it)."""
    return {"id": rid, "created": created, "endpoint": "chat.completions", "status": 200, "model": "m",
            "messages": json.dumps([{"role": "user", "content": prompt}]), "params": json.dumps(params or {}),
            "reply": reply, "finish_reason": finish, "choices": "[]", "prompt_tokens": 3, "completion_tokens": 2,
            "latency_ms": 1.0, "mean_logprob": logprob}


def feedback(rid: str, rating: str, score: float, correction: str | None = None) -> dict[str, Any]:
    return {"request_id": rid, "created": 2000.0, "rating": rating, "score": score, "correction": correction}


def write_log(path: Path, requests: list[dict[str, Any]], feedbacks: list[dict[str, Any]] = ()) -> Path:  # type: ignore[assignment]
    log = RequestLog(path)
    futures = [log.write("requests", r) for r in requests] + [log.write("feedback", f) for f in feedbacks]
    for future in futures:
        future.result(timeout=30)
    log.close()
    return path


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def planted_log(path: Path) -> Path:
    """One request per signal, two positives and one neutral request (ids say which)."""
    t = 1000.0
    rows = [
        request("down", "rate the weather in oslo", "it rains", created=t),
        request("corr", "translate hello to french", "hallo", created=t + 1),
        request("badjson", "give me json for paris", '{"city": "Paris"', created=t + 2,
                params={"response_format": {"type": "json_object"}}, finish="length"),
        request("schema", "city as json please", '{"town": "Rome"}', created=t + 3,
                params={"response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": SCHEMA}}}),
        request("unsure", "what is the airspeed of a swallow", "about nine", created=t + 4, logprob=-3.0),
        request("refuse", "write a haiku about tea", "I'm sorry, but I can't do that.", created=t + 5),
        request("liked", "add 2 and 3", "5", created=t + 6),
        request("sure", "spell cat backwards", "tac", created=t + 7, logprob=-0.1),
        request("neutral", "name a colour", "blue", created=t + 8, logprob=-0.8),
        request("goodjson", "paris as json", '{"city": "Paris"}', created=t + 9, logprob=-0.2,
                params={"response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": SCHEMA}}}),
    ]
    fb = [feedback("down", "down", 0.0), feedback("corr", "2", 0.25, correction="bonjour"), feedback("liked", "up", 1.0)]
    return write_log(path, rows, fb)
