"""A small scripted OpenAI-compatible HTTP server for judge tests (real HTTP on 127.0.0.1, free port).

``JudgeServer(script)`` answers ``POST /v1/chat/completions`` by calling ``script(request, n)``
(``request``: the parsed JSON body, ``n``: how many requests came before) which returns
``Reply(status, content, delay)``: the HTTP status, the assistant message text (for 200) and
seconds to wait first. Every request is recorded in ``server.requests``. ``GET /v1/models`` lists
``server.model`` with ``server.root`` as its weights' folder (404 while ``root`` is None).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    content: str = ""
    delay: float = 0.0


Script = Callable[[dict[str, Any], int], Reply]


class JudgeServer:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.model, self.root = "judge", None  # what GET /v1/models lists (None: it answers 404)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                """``GET /v1/models``: the served model (``server.root``; 404 when it is None)."""
                if self.path.rstrip("/") != "/v1/models" or server.root is None:
                    self.send_error(404)
                    return
                data = json.dumps({"object": "list", "data": [
                    {"id": server.model, "object": "model", "created": 0, "owned_by": "test",
                     "root": server.root}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server._lock:
                    n = len(server.requests)
                    server.requests.append(body)
                reply = server.script(body, n)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.status == 200:
                    payload = {"id": f"c{n}", "object": "chat.completion", "created": 0, "model": body.get("model", ""),
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": reply.content}}],
                               "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                else:
                    payload = {"error": {"message": f"scripted status {reply.status}", "type": "test"}}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "JudgeServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def verdict(correctness: int = 5, completeness: int = 4, format: int = 5, hallucination: bool = False) -> str:
    return json.dumps({"correctness": correctness, "completeness": completeness, "format": format,
                       "hallucination": hallucination, "reason": "scripted"})


def user_text(request: dict[str, Any]) -> str:
    """The last message of a chat request (the judge prompt with the reply in it)."""
    return str(request["messages"][-1]["content"])


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
