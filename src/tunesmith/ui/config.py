"""``UIConfig``: what ``tunesmith ui`` serves and how it is reached."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tunesmith.errors import TunesmithError


@dataclass(frozen=True)
class UIConfig:
    """``runs``: the folder searched for run directories (any folder holding a ``run.json``) and
    evaluations; ``queue``: the flywheel review queue file (JSONL, see ``review.py``);
    ``serve_url``: the ``tunesmith serve`` the Playground talks to (its key in ``$serve_api_key_env``);
    ``api_key_env``: the variable holding the key browsers must present when the UI listens beyond
    loopback (as ``tunesmith serve``: no key, loopback only)."""

    runs: Path = Path("outputs")
    host: str = "127.0.0.1"
    port: int = 7860
    api_key_env: str | None = None
    queue: Path | None = None
    serve_url: str = "http://127.0.0.1:8000"
    serve_api_key_env: str | None = None

    @property
    def queue_file(self) -> Path:
        return self.queue if self.queue is not None else self.runs / "review_queue.jsonl"


def api_key(config: UIConfig) -> str | None:
    """The key browsers must send; refuses a non-loopback host without one (``serve``'s rule)."""
    from tunesmith.serve.config import required_api_key

    return required_api_key(config.host, config.api_key_env)


def serve_key(config: UIConfig) -> str | None:
    """The key the Playground sends to ``tunesmith serve`` (None: no key)."""
    if not config.serve_api_key_env:
        return None
    key = os.environ.get(config.serve_api_key_env)
    if not key:
        raise TunesmithError(f"--serve-api-key-env {config.serve_api_key_env}: the environment variable is empty or unset")
    return key
