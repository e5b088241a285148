"""One uvicorn server for a FastAPI app, in this thread or a background one: what ``serve`` and
``ui`` both run (``url``, ``start``/``stop``, ``serve_forever``, a context manager)."""

from __future__ import annotations

import threading
import time
from typing import Any

from tunesmith.errors import TunesmithError


class HttpServer:
    """``app`` on ``host:port``; ``_close()`` is the hook a subclass frees its resources in."""

    name = "http"

    def __init__(self, app: Any, host: str, port: int):
        import uvicorn

        self.app, self.host, self.port = app, host, port
        self._uvicorn = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                                      access_log=False, timeout_graceful_shutdown=5))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        sockets = [s for server in getattr(self._uvicorn, "servers", []) for s in server.sockets]
        port = sockets[0].getsockname()[1] if sockets else self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}"

    def serve_forever(self) -> None:
        """Serve in this thread until SIGINT/SIGTERM, then ``_close``."""
        try:
            self._uvicorn.run()
        finally:
            self._close()

    def start(self) -> Any:
        self._thread = threading.Thread(target=self._uvicorn.run, name=f"tunesmith-{self.name}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._close()
                raise TunesmithError(f"{self.name}: could not listen on {self.host}:{self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._close()

    def _close(self) -> None:
        """Free what the app holds (nothing by default)."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
