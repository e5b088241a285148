"""The FastAPI application: middleware (request id, size limit, API key, metrics), errors, small endpoints."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException

from tunesmith.serve import protocol as p
from tunesmith.serve.errors import APIError
from tunesmith.serve.handlers import committed
from tunesmith.serve.routes import router
from tunesmith.serve.state import State

GENERATION = {"/v1/chat/completions": "chat.completions", "/v1/completions": "completions"}
OPEN_PATHS = {"/health"}
PATHS = {*GENERATION, *OPEN_PATHS, "/metrics", "/v1/models", "/v1/feedback", "/v1/load_lora_adapter",
         "/v1/unload_lora_adapter"}  # metric labels: anything else counts as "other"


def create_app(state: State) -> FastAPI:
    app = FastAPI(title="tunesmith serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.tunesmith = state
    app.include_router(router)
    _errors(app)
    _endpoints(app)
    app.add_middleware(_Guard, state=state)  # type: ignore[arg-type]
    return app


class _Guard:
    """ASGI middleware: request id header, body size limit, API key, request counter."""

    def __init__(self, app: Any, state: State):
        self.app, self.state = app, state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = f"req-{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id
        scope["state"]["arrived"] = time.time()
        status = {"code": 500}

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        refusal = self._refuse(scope)
        if refusal is not None:
            await self._log_refusal(scope, request_id, refusal)
            await _error_response(refusal)(scope, receive, send_with_id)
        else:
            await self.app(scope, self._limited(receive), send_with_id)
        path = scope["path"] if scope["path"] in PATHS else "other"
        self.state.metrics.requests.labels(path, str(status["code"])).inc()

    def _refuse(self, scope: dict[str, Any]) -> APIError | None:
        headers = dict(scope["headers"])
        if self.state.api_key is not None and scope["path"] not in OPEN_PATHS:
            given = headers.get(b"authorization", b"").decode("latin-1")
            expected = f"Bearer {self.state.api_key}"
            if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
                return APIError(401, "Invalid or missing API key (Authorization: Bearer <key>)", code="invalid_api_key")
        length = headers.get(b"content-length")
        if length is not None and not length.isdigit():
            return APIError(400, "invalid Content-Length header")
        if length is not None and int(length) > self.state.config.max_request_bytes:
            return _too_large(self.state.config.max_request_bytes)
        return None

    def _limited(self, receive: Any) -> Any:
        limit, seen = self.state.config.max_request_bytes, {"bytes": 0}

        async def wrapped() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.request":
                seen["bytes"] += len(message.get("body", b""))
                if seen["bytes"] > limit:
                    raise _too_large(limit)
            return message

        return wrapped

    async def _log_refusal(self, scope: dict[str, Any], request_id: str, error: APIError) -> None:
        endpoint = GENERATION.get(scope["path"])
        if endpoint is not None and error.status != 401:  # unauthenticated traffic is not the flywheel's
            await log_error(self.state, request_id, endpoint, scope["state"]["arrived"], error, None)


def _too_large(limit: int) -> APIError:
    return APIError(413, f"request body larger than {limit} bytes", code="request_too_large")


def _error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def log_error(state: State, request_id: str, endpoint: str, arrived: float, error: APIError,
                    model: str | None) -> None:
    row = {"id": request_id, "created": arrived, "endpoint": endpoint, "status": error.status,
           "error": error.message, "model": model}
    await committed(state, state.log.write("requests", row))


def _errors(app: FastAPI) -> None:
    async def respond(request: Request, error: APIError) -> JSONResponse:
        endpoint = GENERATION.get(request.url.path)
        if endpoint is not None:
            model = None
            try:
                model = json.loads(await request.body()).get("model")
            except Exception:  # the body itself may be what was wrong
                pass
            await log_error(request.app.state.tunesmith, request.state.request_id, endpoint, request.state.arrived,
                            error, model if isinstance(model, str) else None)
        return _error_response(error)

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return await respond(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        if first.get("type") == "json_invalid":
            message, where = f"the body is not valid JSON: {first.get('ctx', {}).get('error', '')}".rstrip(": "), None
        else:
            message = f"{where or 'body'}: {first.get('msg', 'invalid request')}"
        return await respond(request, APIError(400, message, param=where or None))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return await respond(request, APIError(exc.status_code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        return await respond(request, APIError(500, f"internal error: {type(exc).__name__}", code="internal_error"))


def _endpoints(app: FastAPI) -> None:
    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        data, kind = request.app.state.tunesmith.metrics.render()
        return Response(data, media_type=kind)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        state: State = request.app.state.tunesmith
        data = [{"id": s.name, "object": "model", "created": s.created, "owned_by": "tunesmith", "root": str(s.path),
                 "parent": s.parent, "max_model_len": state.models.max_len} for s in list(state.models.table.values())]
        return {"object": "list", "data": data}

    @app.post("/v1/feedback")
    async def feedback(body: p.FeedbackRequest, request: Request) -> dict[str, Any]:
        state: State = request.app.state.tunesmith
        status = await asyncio.to_thread(state.log.status, body.request_id)
        if status is None:
            raise APIError(404, f"request_id '{body.request_id}' is not in the request log", param="request_id",
                           code="request_not_found")
        if status != 200:  # mining reads answered requests only: the rating would be kept and never used
            raise APIError(409, f"request_id '{body.request_id}' was refused (HTTP {status}): there is no reply to "
                           "rate", param="request_id", code="request_refused")
        row = {"request_id": body.request_id, "created": time.time(), "rating": str(body.rating),
               "score": body.score(), "correction": body.correction, "comment": body.comment}
        await committed(state, state.log.write("feedback", row))
        return {"object": "feedback", "request_id": body.request_id, "rating": str(body.rating), "score": body.score()}

    @app.post("/v1/load_lora_adapter")
    async def load_adapter(body: p.LoadAdapterRequest, request: Request) -> PlainTextResponse:
        state: State = request.app.state.tunesmith
        await asyncio.wrap_future(state.engine.call(lambda: state.models.add(body.lora_name, body.lora_path)))
        return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload_adapter(body: p.UnloadAdapterRequest, request: Request) -> PlainTextResponse:
        state: State = request.app.state.tunesmith
        await asyncio.wrap_future(state.engine.call(lambda: state.models.remove(body.lora_name)))
        return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' removed successfully.")
