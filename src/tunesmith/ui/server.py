"""``run(config)``: serve the dashboard until interrupted; ``start(config)``: in a background thread."""

from __future__ import annotations

import threading
import time
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.ui.config import UIConfig


class Server:
    """A running dashboard: ``url``; ``stop()`` shuts it down."""

    def __init__(self, config: UIConfig):
        import uvicorn

        from tunesmith.ui.app import create_app

        self.config = config
        self.app = create_app(config)
        self._uvicorn = uvicorn.Server(uvicorn.Config(self.app, host=config.host, port=config.port,
                                                      log_level="warning", access_log=False,
                                                      timeout_graceful_shutdown=5))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        sockets = [s for server in getattr(self._uvicorn, "servers", []) for s in server.sockets]
        port = sockets[0].getsockname()[1] if sockets else self.config.port
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{port}"

    def serve_forever(self) -> None:
        self._uvicorn.run()

    def start(self) -> Server:
        self._thread = threading.Thread(target=self._uvicorn.run, name="tunesmith-ui", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise TunesmithError(f"ui: could not listen on {self.config.host}:{self.config.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start(config: UIConfig) -> Server:
    """Serve in a background thread; returns once listening (``port=0`` picks a free port)."""
    return Server(config).start()


def run(config: UIConfig, on_ready: Any = None) -> None:
    """Serve until SIGINT/SIGTERM; ``on_ready(server)`` is called before serving starts."""
    server = Server(config)
    if on_ready is not None:
        on_ready(server)
    server.serve_forever()
