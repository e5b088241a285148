"""The FastAPI application of ``tunesmith ui``: the access guard, page rendering, the routes.

Pages are server-rendered Jinja templates (``templates/``) with the reporting package's SVG charts
and stylesheet; the few interactive parts (live progress, review shortcuts, chat) are small inline
scripts calling the JSON endpoints here. Nothing is loaded from outside this server.
"""

from __future__ import annotations

import hmac
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from jinja2 import ChoiceLoader, Environment, PackageLoader, StrictUndefined

from tunesmith.errors import TunesmithError
from tunesmith.serve.config import is_loopback
from tunesmith.ui.config import UIConfig, api_key

COOKIE = "tunesmith_ui_key"
PAGES = (("runs", "Runs"), ("eval", "Evaluate"), ("data", "Data"), ("playground", "Playground"),
         ("new", "New run"), ("review", "Review queue"))
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def create_app(config: UIConfig) -> FastAPI:
    """The app for ``config``; refuses a non-loopback host without an API key."""
    from tunesmith.ui import actions, pages

    app = FastAPI(title="tunesmith ui", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ui = config
    app.state.key = api_key(config)

    @app.get("/")
    async def home() -> RedirectResponse:
        return RedirectResponse("/runs", status_code=303)

    @app.get("/login")
    async def login(key: str = "") -> Any:
        if app.state.key is None or not hmac.compare_digest(key.encode(), app.state.key.encode()):
            return HTMLResponse("invalid key", status_code=401)
        response = RedirectResponse("/runs", status_code=303)
        response.set_cookie(COOKIE, key, httponly=True, samesite="strict")
        return response

    pages.register(app)
    actions.register(app)
    app.add_middleware(_Guard, key=app.state.key, loopback=is_loopback(config.host))  # type: ignore[arg-type]
    return app


class _Guard:
    """ASGI middleware. Other web sites the browser visits must not drive the dashboard: a request
    whose ``Origin`` is another site is refused (cross-site form posts), and so is ``Origin: null``
    (what a sandboxed iframe, a ``data:`` page or a local file sends: any web site can make one).
    A request that changes something (not GET/HEAD/OPTIONS) without an ``Origin`` is refused when
    ``Sec-Fetch-Site`` says cross-site or same-site, or its ``Referer`` is another site; without
    either (curl, scripts) it passes. On loopback a ``Host`` that is not a loopback name is refused
    too (DNS rebinding). With a key, every path but /login needs ``Authorization: Bearer KEY`` or
    the login cookie."""

    def __init__(self, app: Any, key: str | None, loopback: bool):
        self.app, self.key, self.loopback = app, key, loopback

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        problem = _foreign(headers, self.loopback, scope.get("method", "GET"))
        if problem is not None:
            return await JSONResponse({"error": problem}, status_code=403)(scope, receive, send)
        if self.key is None or scope["path"] == "/login" or self._allowed(scope):
            return await self.app(scope, receive, send)
        response = JSONResponse({"error": "invalid or missing API key (Authorization: Bearer <key>, "
                                          "or open /login?key=<key> once in the browser)"}, status_code=401)
        await response(scope, receive, send)

    def _allowed(self, scope: dict[str, Any]) -> bool:
        headers = dict(scope["headers"])
        given = headers.get(b"authorization", b"").decode("latin-1").removeprefix("Bearer ")
        cookies = headers.get(b"cookie", b"").decode("latin-1")
        for part in cookies.split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and value:
                given = given or value
        assert self.key is not None
        return hmac.compare_digest(given.encode("utf-8"), self.key.encode("utf-8"))


def _foreign(headers: dict[bytes, bytes], loopback: bool, method: str = "GET") -> str | None:
    """Why a request comes from another site (None: it does not)."""
    host = headers.get(b"host", b"").decode("latin-1")
    origin = headers.get(b"origin", b"").decode("latin-1")
    if origin == "null":
        return "cross-site request refused (Origin null: a sandboxed frame, data: page or file, not this dashboard)"
    if origin and urlsplit(origin).netloc != host:
        return f"cross-site request refused (Origin {origin} is not this dashboard)"
    if not origin and method.upper() not in SAFE_METHODS:
        site = headers.get(b"sec-fetch-site", b"").decode("latin-1").lower()
        if site in ("cross-site", "same-site"):
            return f"cross-site request refused (Sec-Fetch-Site {site})"
        referer = headers.get(b"referer", b"").decode("latin-1")
        if referer and urlsplit(referer).netloc != host:
            return f"cross-site request refused (Referer {referer} is not this dashboard)"
    name = urlsplit(f"//{host}").hostname or ""
    if loopback and host and not is_loopback(name):
        return f"Host {host} refused: this dashboard listens on loopback only"
    return None


@lru_cache(maxsize=1)
def environment() -> Environment:
    """Autoescaping Jinja environment: the UI's templates, then the reporting package's (style, macros)."""
    loader = ChoiceLoader([PackageLoader("tunesmith.ui", "templates"), PackageLoader("tunesmith.reporting", "templates")])
    return Environment(loader=loader, autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(name: str, page: str, status: int = 200, **context: Any) -> HTMLResponse:
    """The page template ``name`` inside the shared layout; ``page`` marks the navigation entry."""
    html = environment().get_template(name).render(pages=PAGES, page=page, **context)
    return HTMLResponse(html, status_code=status)


def error_page(page: str, title: str, exc: TunesmithError, status: int = 400) -> HTMLResponse:
    return render("error.html.jinja", page, status=status, title=title, error=str(exc))


def ui_config(request: Request) -> UIConfig:
    return request.app.state.ui  # type: ignore[no-any-return]


def root(request: Request) -> Path:
    return ui_config(request).runs


async def form(request: Request) -> dict[str, str]:
    """An urlencoded form body as ``{field: last value}`` (no multipart dependency needed)."""
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


def json_error(exc: TunesmithError, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=status)
