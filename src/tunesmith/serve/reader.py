"""Read the serving log back as typed rows: the input of the data flywheel.

``read_log(path)`` returns every logged request (newest last) with its feedback. Columns are
documented in ``migrations/001_requests_feedback.sql``; JSON columns come back decoded.
Mining signals: ``feedback`` ratings and corrections, ``finish_reason == 'length'`` on
``response_format`` requests (format failures: the reply was cut before the JSON closed),
``mean_logprob`` (low = the model was unsure), ``status`` != 200 (rejected requests).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError


@dataclass(frozen=True)
class Feedback:
    """One ``POST /v1/feedback``: ``rating`` as sent ('up', 'down', '1'..'5'), ``score`` on [0, 1]."""

    request_id: str
    created: float
    rating: str
    score: float
    correction: str | None = None
    comment: str | None = None


@dataclass(frozen=True)
class LoggedRequest:
    """One request to ``/v1/chat/completions`` or ``/v1/completions`` and what the server answered."""

    id: str
    created: float
    endpoint: str
    status: int
    error: str | None
    model: str | None
    adapter: str | None
    messages: list[dict[str, Any]] | None
    prompt: Any
    system_prompt: str | None
    params: dict[str, Any]
    reply: str | None
    finish_reason: str | None
    choices: list[dict[str, Any]]
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float | None
    mean_logprob: float | None
    feedback: list[Feedback] = field(default_factory=list)

    @property
    def score(self) -> float | None:
        """The mean feedback score, None without feedback."""
        return sum(f.score for f in self.feedback) / len(self.feedback) if self.feedback else None


_JSON = {"messages": None, "prompt": None, "params": {}, "choices": []}


def read_log(path: str | Path, *, status: int | None = 200, since: float | None = None,
             model: str | None = None) -> list[LoggedRequest]:
    """Logged requests in arrival order with their feedback; ``status=None`` includes rejected ones."""
    path = Path(path)
    if not path.is_file():
        raise TunesmithError(f"{path}: no such request log")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        where, args = _filters(status, since, model)
        rows = conn.execute(f"SELECT * FROM requests{where} ORDER BY created, rowid", args).fetchall()
        feedback: dict[str, list[Feedback]] = {}
        for f in conn.execute("SELECT * FROM feedback ORDER BY id"):
            feedback.setdefault(f["request_id"], []).append(
                Feedback(f["request_id"], f["created"], f["rating"], f["score"], f["correction"], f["comment"]))
    except sqlite3.Error as exc:
        raise TunesmithError(f"{path}: not a tunesmith request log ({exc})") from None
    finally:
        conn.close()
    out = []
    for row in rows:
        values = dict(row)
        for key, empty in _JSON.items():
            values[key] = json.loads(values[key]) if values[key] is not None else empty
        out.append(LoggedRequest(**values, feedback=feedback.get(values["id"], [])))
    return out


def _filters(status: int | None, since: float | None, model: str | None) -> tuple[str, list[Any]]:
    clauses, args = [], []
    for column, op, value in (("status", "=", status), ("created", ">=", since), ("model", "=", model)):
        if value is not None:
            clauses.append(f"{column} {op} ?")
            args.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args
