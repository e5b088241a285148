"""``run(config)``: serve the dashboard until interrupted; ``start(config)``: in a background thread."""

from __future__ import annotations

from typing import Any

from tunesmith.serve.http import HttpServer
from tunesmith.ui.config import UIConfig


class Server(HttpServer):
    """A running dashboard: ``url``; ``stop()`` shuts it down."""

    name = "ui"

    def __init__(self, config: UIConfig):
        from tunesmith.ui.app import create_app

        self.config = config
        super().__init__(create_app(config), config.host, config.port)


def start(config: UIConfig) -> Server:
    """Serve in a background thread; returns once listening (``port=0`` picks a free port)."""
    return Server(config).start()


def run(config: UIConfig, on_ready: Any = None) -> None:
    """Serve until SIGINT/SIGTERM; ``on_ready(server)`` is called before serving starts."""
    server = Server(config)
    if on_ready is not None:
        on_ready(server)
    server.serve_forever()
