"""One uvicorn server for a FastAPI app, in this thread or a background one: what ``serve`` and
``ui`` both run (``url``, ``start``/``stop``, ``serve_forever``, a context manager)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from tunesmith.errors import TunesmithError


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (0: a free port), as uvicorn binds one; a busy port or an address
    this machine does not have is a one-line error."""
    bare = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in bare else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bare, port))
    except OSError as exc:
        sock.close()
        raise TunesmithError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class HttpServer:
    """``app`` on ``host:port``, bound when constructed (``sock``: already bound); ``_close()`` is the hook a
    subclass frees its resources in."""

    name = "http"

    def __init__(self, app: Any, host: str, port: int, sock: socket.socket | None = None):
        import uvicorn

        self._sock = sock or listen_socket(host, port)
        self.app, self.host, self.port = app, host, int(self._sock.getsockname()[1])  # port 0: the one picked
        self._uvicorn = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning",
                                                      access_log=False, timeout_graceful_shutdown=5))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host.strip('[]')}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve_forever(self, on_ready: Any = None) -> None:
        """Serve in this thread until SIGINT/SIGTERM, then ``_close``; ``on_ready(self)`` once the socket
        listens (a client that connects then waits for the first accept rather than being refused)."""
        try:
            self._sock.listen(self._uvicorn.config.backlog)
            if on_ready is not None:
                on_ready(self)
            self._uvicorn.run(sockets=[self._sock])
        finally:
            self._sock.close()
            self._close()

    def start(self) -> Any:
        self._thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [self._sock]},
                                        name=f"tunesmith-{self.name}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._sock.close()
                self._close()
                raise TunesmithError(f"{self.name}: could not listen on {self.host}:{self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._sock.close()
        self._close()

    def _close(self) -> None:
        """Free what the app holds (nothing by default)."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
