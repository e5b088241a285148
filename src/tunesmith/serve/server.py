"""``run(config)``: serve until interrupted; ``start(config)``: serve in a background thread (tests, notebooks)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.serve.config import ServeConfig


@dataclass(frozen=True)
class ServeResult:
    """What a finished ``run`` served."""

    url: str
    db: Path
    models: list[str]
    requests: int


class Server:
    """A running server: ``url``, ``state`` (models, engine, log); ``stop()`` shuts it down cleanly."""

    def __init__(self, config: ServeConfig):
        import uvicorn

        from tunesmith.serve.app import create_app
        from tunesmith.serve.state import build

        self.config = config
        self.state = build(config)
        self.app = create_app(self.state)
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
        """Serve in this thread until SIGINT/SIGTERM, then stop the engine and flush the log."""
        try:
            self._uvicorn.run()
        finally:
            self._close()

    def start(self) -> Server:
        self._thread = threading.Thread(target=self._uvicorn.run, name="tunesmith-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._close()
                raise TunesmithError(f"serve: could not listen on {self.config.host}:{self.config.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._close()

    def _close(self) -> None:
        self.state.engine.stop()
        self.state.log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start(config: ServeConfig) -> Server:
    """Load, listen and return at once (the server runs in a background thread)."""
    return Server(config).start()


def run(config: ServeConfig, on_ready: Any = None) -> ServeResult:
    """Serve ``config`` in this thread until interrupted (vLLM's engine: see ``export.vllm``)."""
    server = Server(config)
    if on_ready is not None:
        on_ready(server)
    server.serve_forever()
    from tunesmith.serve.reader import read_log

    count = len(read_log(config.db, status=None)) if config.db.is_file() else 0
    return ServeResult(server.url, config.db, server.state.models.names(), count)
