"""``run(config)``: serve until interrupted; ``start(config)``: serve in a background thread (tests, notebooks)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.serve.config import ServeConfig
from tunesmith.serve.http import HttpServer


@dataclass(frozen=True)
class ServeResult:
    """What a finished ``run`` served."""

    url: str
    db: Path
    models: list[str]
    requests: int


class Server(HttpServer):
    """A running server: ``url``, ``state`` (models, engine, log); ``stop()`` shuts it down cleanly."""

    name = "serve"

    def __init__(self, config: ServeConfig):
        from tunesmith.serve.app import create_app
        from tunesmith.serve.state import build

        self.config = config
        self.state = build(config)
        super().__init__(create_app(self.state), config.host, config.port)

    def _close(self) -> None:
        self.state.engine.stop()
        self.state.log.close()


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
