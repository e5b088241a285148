"""The mining signals, one registry table: each kind is a function of a logged request (and the
settings of ``signals.yaml``) that returns a ``Hit`` with its reason, or None.

``judge_score`` reads verdicts collected beforehand (``Context.judged``: request id -> mean score),
since a judge is asked once per mining run for all requests together (``mine.judge_requests``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from typing import Any

from tunesmith.config.yaml_load import load_table
from tunesmith.serve.reader import LoggedRequest


@dataclass(frozen=True)
class Hit:
    """One signal raised by one request: its kind, severity on [0, 1], the measured value and why."""

    kind: str
    severity: float
    value: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": self.severity, "value": self.value, "reason": self.reason}


@dataclass
class Context:
    """What detectors may read besides the request: settings per kind and the judge's verdicts."""

    settings: dict[str, dict[str, Any]]
    judged: dict[str, float] = field(default_factory=dict)


Detector = Callable[[LoggedRequest, dict[str, Any], Context], "tuple[float | None, str] | None"]


@lru_cache(maxsize=1)
def default_settings() -> dict[str, dict[str, Any]]:
    """``signals.yaml``: severity and thresholds per kind, plus the ``positive`` thresholds."""
    return load_table(files("tunesmith.flywheel").joinpath("signals.yaml").read_text("utf-8"))


def _thumbs_down(req: LoggedRequest, s: dict[str, Any], ctx: Context) -> tuple[float | None, str] | None:
    low = [f for f in req.feedback if f.score <= s["max_score"]]
    if not low:
        return None
    return min(f.score for f in low), f"feedback rated {', '.join(repr(f.rating) for f in low)}"


def _correction(req: LoggedRequest, s: dict[str, Any], ctx: Context) -> tuple[float | None, str] | None:
    fixed = [f.correction for f in req.feedback if f.correction and f.correction.strip()]
    return (None, f"the user corrected the reply: {fixed[-1][:80]!r}") if fixed else None


def _format_failure(req: LoggedRequest, s: dict[str, Any], ctx: Context) -> tuple[float | None, str] | None:
    fmt = (req.params or {}).get("response_format") or {}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in ("json_object", "json_schema") or req.reply is None:
        return None
    try:
        value = json.loads(req.reply)
    except ValueError as exc:
        cut = " (cut at max_tokens)" if req.finish_reason == "length" else ""
        return None, f"response_format {kind}: the reply is not valid JSON{cut}: {exc}"
    if kind == "json_object" and not isinstance(value, dict):
        return None, f"response_format json_object: the reply is a JSON {type(value).__name__}, not an object"
    schema = (fmt.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
    if schema:
        import jsonschema

        problem = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
        if problem is not None:
            where = "/".join(str(p) for p in problem.absolute_path) or "(root)"
            return None, f"response_format json_schema: {where}: {problem.message}"
    return None


def _judge_score(req: LoggedRequest, s: dict[str, Any], ctx: Context) -> tuple[float | None, str] | None:
    score = ctx.judged.get(req.id)
    if score is None or score >= s["min_score"]:
        return None
    return score, f"judge score {score:.2f} < {s['min_score']}"


def _low_confidence(req: LoggedRequest, s: dict[str, Any], ctx: Context) -> tuple[float | None, str] | None:
    if req.mean_logprob is None or req.mean_logprob > s["max_mean_logprob"]:
        return None
    return req.mean_logprob, f"mean token logprob {req.mean_logprob:.3f} <= {s['max_mean_logprob']}"


def _refusal(req: LoggedRequest, s: dict[str, Any], ctx: Context) -> tuple[float | None, str] | None:
    from tunesmith.evaluate.probes.checks import refuses

    return (None, "the reply refuses") if req.reply and refuses(req.reply) else None


SIGNALS: dict[str, Detector] = {
    "thumbs_down": _thumbs_down,
    "correction": _correction,
    "format_failure": _format_failure,
    "judge_score": _judge_score,
    "low_confidence": _low_confidence,
    "refusal": _refusal,
}


def detect(req: LoggedRequest, ctx: Context, kinds: list[str] | None = None) -> list[Hit]:
    """Every signal ``req`` raises (of ``kinds``, default all), in table order."""
    hits = []
    for kind in kinds or list(SIGNALS):
        settings = ctx.settings[kind]
        found = SIGNALS[kind](req, settings, ctx)
        if found is not None:
            hits.append(Hit(kind, float(settings["severity"]), found[0], found[1]))
    return hits


def is_positive(req: LoggedRequest, ctx: Context) -> str | None:
    """Why a request without failure signals is a production positive (thumbs-up, high confidence), or None.
    A reply that did not end by itself (cut at max_tokens, abandoned by the client) never is: as a training
    target it would teach the model to stop mid-sentence."""
    if req.finish_reason != "stop":
        return None
    s = ctx.settings["positive"]
    if req.feedback:
        score = req.score
        return f"feedback score {score:.2f}" if score is not None and score >= s["min_score"] else None
    if req.mean_logprob is not None and req.mean_logprob >= s["min_mean_logprob"]:
        return f"mean token logprob {req.mean_logprob:.3f} >= {s['min_mean_logprob']}"
    return None
