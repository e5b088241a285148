"""``run(config)``: serve until interrupted; ``start(config)``: serve in a background thread (tests, notebooks)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.serve.config import ServeConfig
from tunesmith.serve.http import HttpServer, listen_socket


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
        from tunesmith.serve.state import api_key, build

        self.config = config
        api_key(config)  # a public host without a key is refused first
        sock = listen_socket(config.host, config.port)  # a busy port is refused before the model loads
        try:
            self.state = build(config)
        except BaseException:
            sock.close()
            raise
        super().__init__(create_app(self.state), config.host, config.port, sock=sock)

    def _close(self) -> None:
        self.state.engine.stop()
        self.state.log.close()


def start(config: ServeConfig) -> Server:
    """Load, listen and return at once (the server runs in a background thread)."""
    return Server(config).start()


def run(config: ServeConfig, on_ready: Any = None) -> ServeResult:
    """Serve ``config`` in this thread until interrupted (vLLM's engine: see ``export.vllm``); ``on_ready(server)``
    is called once the socket listens (``server.url`` has the port a ``port=0`` picked)."""
    server = Server(config)
    server.serve_forever(on_ready)
    from tunesmith.serve.reader import read_log

    count = len(read_log(config.db, status=None)) if config.db.is_file() else 0
    return ServeResult(server.url, config.db, server.state.models.names(), count)
