"""The pages that change something: Review queue, Playground, New run."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from tunesmith.errors import TunesmithError
from tunesmith.ui import newrun, playground, review
from tunesmith.ui.app import error_page, form, json_error, render, ui_config
from tunesmith.ui.config import serve_key


def _body(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TunesmithError("the request body must be a JSON object")
    return value


def register(app: FastAPI) -> None:
    _review(app)
    _playground(app)
    _new_run(app)


def _review(app: FastAPI) -> None:
    @app.get("/review", response_class=HTMLResponse)
    def review_page(request: Request) -> HTMLResponse:
        path = ui_config(request).queue_file
        try:
            items = review.read(path)
        except TunesmithError as exc:
            return error_page("review", "Review queue", exc)
        return render("review.html.jinja", "review", title="Review queue", queue=str(path),
                      counts=review.counts(items), empty=not items)

    @app.get("/api/review")
    def review_items(request: Request) -> JSONResponse:
        try:
            items = review.read(ui_config(request).queue_file)
        except TunesmithError as exc:
            return json_error(exc)
        return JSONResponse({"pending": review.pending(items), "counts": review.counts(items)})

    @app.post("/api/review")
    async def review_decide(request: Request) -> JSONResponse:
        try:
            body = _body(await request.json())
            item = review.decide(ui_config(request).queue_file, str(body.get("id", "")), str(body.get("verdict", "")),
                                 body.get("correction"))
            items = review.read(ui_config(request).queue_file)
        except (TunesmithError, ValueError) as exc:
            return json_error(exc if isinstance(exc, TunesmithError) else TunesmithError("the body is not valid JSON"))
        return JSONResponse({"item": item, "counts": review.counts(items)})


def _playground(app: FastAPI) -> None:
    @app.get("/playground", response_class=HTMLResponse)
    def playground_page(request: Request) -> HTMLResponse:
        config = ui_config(request)
        try:
            names, problem = playground.models(config.serve_url, serve_key(config)), None
        except TunesmithError as exc:
            names, problem = [], str(exc)
        return render("playground.html.jinja", "playground", title="Playground", server=config.serve_url,
                      models=names, problem=problem)

    @app.post("/api/chat")
    async def chat(request: Request) -> JSONResponse:
        config = ui_config(request)
        try:
            body = _body(await request.json())
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise TunesmithError("messages: type a message first")
            result = playground.chat(config.serve_url, serve_key(config), str(body.get("model") or ""), messages,
                                     max_tokens=_int(body.get("max_tokens", 64), "max_tokens"),
                                     schema=str(body.get("schema") or ""))
        except TunesmithError as exc:
            return json_error(exc)
        return JSONResponse(result)

    @app.post("/api/feedback")
    async def feedback(request: Request) -> JSONResponse:
        config = ui_config(request)
        try:
            body = _body(await request.json())
            result = playground.feedback(config.serve_url, serve_key(config), str(body.get("request_id") or ""),
                                         str(body.get("rating") or ""), body.get("comment"))
        except TunesmithError as exc:
            return json_error(exc)
        return JSONResponse(result)


def _int(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise TunesmithError(f"{name}: must be a whole number (got {value!r})") from None
    if not 1 <= number <= 4096:
        raise TunesmithError(f"{name}: must be between 1 and 4096 (got {number})")
    return number


def _new_run(app: FastAPI) -> None:
    @app.get("/new", response_class=HTMLResponse)
    def new_page(request: Request, config: str = "") -> HTMLResponse:
        return render("new.html.jinja", "new", title="New run", path=config, overrides="", checked=None,
                      error=None, started=None)

    @app.post("/new", response_class=HTMLResponse)
    async def new_submit(request: Request) -> HTMLResponse:
        fields = await form(request)
        path, text, action = fields.get("config", ""), fields.get("overrides", ""), fields.get("action", "check")
        context: dict[str, Any] = {"title": "New run", "path": path, "overrides": text, "checked": None,
                                   "error": None, "started": None}
        try:
            context["checked"] = newrun.check(path, text)
            if action == "start":
                process, log = newrun.start(path, text, context["checked"])
                context["started"] = {"pid": process.pid, "output_dir": str(context["checked"].config.output_dir),
                                      "log": str(log)}
        except TunesmithError as exc:
            context["error"] = str(exc)
        return render("new.html.jinja", "new", status=400 if context["error"] else 200, **context)
