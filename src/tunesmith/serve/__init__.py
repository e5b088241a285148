"""serve: an OpenAI-compatible server for a tunesmith model folder, and the vLLM hand-off.

``run(ServeConfig(...))`` serves until interrupted; ``start(config)`` returns a running
``Server`` (background thread). Every request and feedback lands in a SQLite log that
``read_log(path)`` returns as typed rows. ``vllm.command(model_dir, ...)`` builds the equivalent
``vllm serve`` command for GPUs. FastAPI, uvicorn, prometheus-client and llguidance come with
``pip install 'tunesmith[serve]'``; this module imports them only when a server starts.
"""

from tunesmith.serve.config import ServeConfig
from tunesmith.serve.reader import Feedback, LoggedRequest, read_log

__all__ = ["Feedback", "LoggedRequest", "ServeConfig", "ServeResult", "Server", "read_log", "run", "start"]


def __getattr__(name: str):  # the server needs the serve extra; the config and the log reader do not
    if name in ("run", "start", "Server", "ServeResult"):
        from tunesmith.serve import server as _server

        return getattr(_server, name)
    raise AttributeError(name)
