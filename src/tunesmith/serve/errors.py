"""Errors the HTTP API answers with an OpenAI-style body: ``{"error": {message, type, param, code}}``."""

from __future__ import annotations

from tunesmith.errors import did_you_mean

from typing import Any

from starlette.exceptions import HTTPException


class APIError(HTTPException):
    """A request the server refuses; ``status`` is the HTTP status (4xx).

    An ``HTTPException`` so that FastAPI passes it through unchanged when it is raised while the
    body is read (the size limit)."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(status, message, headers)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPES.get(status, "invalid_request_error")
        self.headers = headers or {}

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


_TYPES = {401: "authentication_error", 404: "not_found_error", 413: "invalid_request_error",
          429: "rate_limit_error", 500: "internal_error", 503: "service_unavailable"}


def not_found(name: str, known: list[str]) -> APIError:
    extra = did_you_mean(name, known)
    return APIError(404, f"The model '{name}' does not exist; served: {', '.join(known)}{extra}",
                    param="model", code="model_not_found")
