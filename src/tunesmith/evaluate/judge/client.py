"""Ask an OpenAI-compatible endpoint for verdicts: timeouts, bounded retries with backoff, the
cache, and a stop when the endpoint is plainly down.

A verdict request either returns a parsed value or an ``Outcome`` with the reason it failed; it
is never turned into a score. Client errors that retrying cannot fix (401, 404: a wrong key or
model name) and a run of ``max_consecutive_failures`` failed rows raise ``JudgeError``.

A caller may pass the ``response_format`` its parser expects (``verdict.rubric_format``); it is
sent unless ``judge.structured`` is false. With ``auto`` (the default) an endpoint that refuses it
(HTTP 400 or 422) is asked the same request without it, and, once that plain request worked, every
later request of this client goes plain. Either way the reply goes through the same parser.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config.schema import JudgeConfig
from tunesmith.errors import ConfigError, TunesmithError
from tunesmith.evaluate.judge.cache import VerdictCache, cache_key
from tunesmith.evaluate.judge.verdict import VerdictError

_RETRY_STATUS = {408, 409, 429}
_FORMAT_REFUSED = {400, 422}  # what servers answer to a request field or schema they do not take
logger = logging.getLogger(__name__)


class JudgeError(TunesmithError):
    """The judge cannot be used at all (unreachable, refusing the key or model, or failing row after row)."""


@dataclass
class Outcome:
    """One verdict request: the parsed value (None on failure), the raw reply, why it failed, tries, cache
    hit, and whether the reply was asked with a ``response_format`` (None: from the cache)."""

    value: Any
    raw: str | None
    error: str | None
    attempts: int
    cached: bool
    structured: bool | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


class JudgeClient:
    """One judge endpoint + model, with its cache (``None``: no cache) and rubric fingerprint."""

    def __init__(self, config: JudgeConfig, cache: VerdictCache | None, rubric_id: str,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        import openai

        key = None
        if config.api_key_env:
            key = os.environ.get(config.api_key_env)
            if not key:
                raise ConfigError(f"judge.api_key_env: the environment variable {config.api_key_env} is not set")
        self.config, self.cache, self.rubric_id, self._sleep = config, cache, rubric_id, sleep
        self._openai = openai
        self._client = openai.OpenAI(base_url=config.base_url, api_key=key or "no-key", timeout=config.timeout,
                                     max_retries=0)
        self.format_refused: str | None = None  # why the endpoint refused response_format (auto mode)
        self._identity: str | None = None
        self._identity_lock = threading.Lock()

    @property
    def identity(self) -> str:
        """Which judge answers, for the cache key beside the model name: the endpoint, the reply budget and,
        when the endpoint lists it, the served model's ``root`` (vLLM and tunesmith serve name the weights'
        folder), so another model served under the same name, or the same name at another endpoint, is asked
        afresh instead of answering from verdicts it never gave. Asked once per client."""
        with self._identity_lock:
            if self._identity is None:
                self._identity = f"{self.config.base_url.rstrip('/')}|{self._served_root()}|{self.config.max_tokens}"
            return self._identity

    def _served_root(self) -> str:
        """The ``root`` that ``GET /models`` gives for the judge model ('' when the endpoint does not say)."""
        try:
            listed = self._client.with_options(timeout=min(5.0, self.config.timeout)).models.list()
            entry = next((m for m in listed.data if m.id == self.config.model), None)
        except Exception:  # noqa: BLE001 (best effort: an endpoint without /models is still a judge)
            return ""
        return str((getattr(entry, "model_extra", None) or {}).get("root") or "")

    @property
    def structured(self) -> bool:
        """Whether the next request sends the caller's ``response_format``."""
        return self.config.structured is not False and self.format_refused is None

    def ask(self, messages: list[dict[str, str]], parse: Callable[[str], Any],
            response_format: dict[str, Any] | None = None) -> Outcome:
        """The parsed verdict for ``messages`` (from the cache when there), retrying failures;
        ``response_format`` asks the endpoint for the object ``parse`` expects (see the module doc)."""
        cfg = self.config
        key = cache_key(cfg.model, self.rubric_id, cfg.temperature, messages, self.identity)
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None:
            try:
                return Outcome(parse(hit), hit, None, 0, True)
            except VerdictError:
                pass  # the parser got stricter since: ask again
        error, raw = "", None
        for attempt in range(cfg.max_retries + 1):
            if attempt:
                self._sleep(cfg.backoff * 2 ** (attempt - 1))
            try:
                raw, structured = self._complete(messages, response_format)
            except _Retryable as exc:
                error = str(exc)
                continue
            try:
                value = parse(raw)
            except VerdictError as exc:
                error = f"unusable reply ({exc}): {raw[:120]!r}"
                continue
            if self.cache is not None:
                self.cache.put(key, raw, cfg.model)
            return Outcome(value, raw, None, attempt + 1, False, structured)
        return Outcome(None, raw, error, cfg.max_retries + 1, False)

    def _complete(self, messages: list[dict[str, str]], response_format: dict[str, Any] | None) -> tuple[str, bool]:
        """The reply text, and whether it was asked with ``response_format``."""
        fmt = response_format if self.structured else None
        try:
            return self._create(messages, fmt), fmt is not None
        except _FormatRefused as exc:
            text = self._create(messages, None)  # the plain request; its errors are the usual ones
            if self.format_refused is None:
                logger.warning("judge %s (model %r) refused response_format (%s); asking without it from now on",
                               self.config.base_url, self.config.model, exc)
            self.format_refused = str(exc)
            return text, False

    def _create(self, messages: list[dict[str, str]], response_format: dict[str, Any] | None) -> str:
        cfg, oa = self.config, self._openai
        extra = {"response_format": response_format} if response_format is not None else {}
        try:
            response = self._client.chat.completions.create(
                model=cfg.model, messages=messages, temperature=cfg.temperature, max_tokens=cfg.max_tokens, **extra)
        except oa.APITimeoutError:
            raise _Retryable(f"no reply within {cfg.timeout:g} s") from None
        except oa.APIConnectionError as exc:
            raise _Retryable(f"cannot connect: {_cause(exc)}") from None
        except oa.APIStatusError as exc:
            if exc.status_code in _RETRY_STATUS or exc.status_code >= 500:
                raise _Retryable(f"HTTP {exc.status_code}") from None
            status = f"HTTP {exc.status_code}: {_first_line(_message(exc))}"
            if response_format is not None and exc.status_code in _FORMAT_REFUSED:
                if cfg.structured == "auto":
                    raise _FormatRefused(status) from None
                status += " (the request carried response_format: set judge.structured to auto or false)"
            raise JudgeError(f"judge {cfg.base_url} (model {cfg.model!r}): {status}") from None
        if not getattr(response, "choices", None):
            raise _Retryable("the reply has no choices")
        return str(response.choices[0].message.content or "")

    def ask_many(self, requests: Sequence[list[dict[str, str]]], parse: Callable[[str], Any],
                 response_format: dict[str, Any] | None = None) -> list[Outcome]:
        """``ask`` for every request, ``config.workers`` at a time, in input order. Raises
        ``JudgeError`` once ``max_consecutive_failures`` requests in a row have failed."""
        outcomes: list[Outcome | None] = [None] * len(requests)
        streak, last = 0, ""
        with ThreadPoolExecutor(max_workers=self.config.workers) as pool:
            pending: dict[Future[Outcome], int] = {}
            queue = iter(range(len(requests)))
            for i in queue:
                pending[pool.submit(self.ask, requests[i], parse, response_format)] = i
                if len(pending) >= self.config.workers:
                    break
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    outcome = outcomes[pending.pop(future)] = future.result()
                    streak, last = (streak + 1, outcome.error or "") if outcome.failed else (0, last)
                if streak >= self.config.max_consecutive_failures:
                    for future in pending:
                        future.cancel()
                    raise JudgeError(f"judge {self.config.base_url} (model {self.config.model!r}): {streak} verdicts "
                                     f"in a row failed after {self.config.max_retries + 1} tries each; last: {last}")
                for i in queue:
                    pending[pool.submit(self.ask, requests[i], parse, response_format)] = i
                    if len(pending) >= self.config.workers:
                        break
        return [o for o in outcomes if o is not None]

    def close(self) -> None:
        self._client.close()
        if self.cache is not None:
            self.cache.close()


class _Retryable(Exception):
    """A failure another try may fix (timeout, connection refused, 5xx, 429)."""


class _FormatRefused(Exception):
    """The endpoint answered 400/422 to a request with ``response_format`` (auto mode: ask plainly)."""


def _cause(exc: BaseException) -> str:
    inner = exc.__cause__ or exc.__context__
    while inner is not None and (inner.__cause__ or inner.__context__) is not None:
        inner = inner.__cause__ or inner.__context__
    return _first_line(str(inner or exc)) or type(exc).__name__


def _message(exc: Any) -> str:
    """The server's own error message (OpenAI error bodies: ``{"error": {"message": ...}}``)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return str(exc.message)


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0][:200] if (text or "").strip() else ""


def open_client(config: JudgeConfig, rubric_id: str, default_cache: Path,
                sleep: Callable[[float], None] = time.sleep) -> JudgeClient:
    """A client for ``config`` with its verdict cache (``config.cache`` or ``default_cache``)."""
    cache = VerdictCache(Path(config.cache) if config.cache else default_cache)
    return JudgeClient(config, cache, rubric_id, sleep)
