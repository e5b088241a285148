"""``tunesmith ui [--runs DIR] [--host 127.0.0.1] [--port 7860]``: the local web dashboard."""

from __future__ import annotations

from pathlib import Path

import typer

from tunesmith.errors import TunesmithError


def ui(
    runs: Path = typer.Option(Path("outputs"), "--runs", help="Folder with run directories and evaluations."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; beyond loopback only with --api-key-env."),
    port: int = typer.Option(7860, "--port", min=0, max=65535),
    api_key_env: str | None = typer.Option(None, "--api-key-env", help="Environment variable holding the key browsers must present (open /login?key=KEY once)."),
    queue: Path | None = typer.Option(None, "--queue", help="Flywheel review queue (JSONL; default: RUNS/review_queue.jsonl)."),
    serve_url: str = typer.Option("http://127.0.0.1:8000", "--serve-url", help="The tunesmith serve the Playground talks to."),
    serve_api_key_env: str | None = typer.Option(None, "--serve-api-key-env", help="Environment variable holding that server's API key."),
) -> None:
    """Runs, evaluations, data, the review queue, a playground and new runs in the browser."""
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise TunesmithError(f"tunesmith ui needs the serve extra: pip install 'tunesmith[serve]' (missing: {', '.join(missing)})")
    if not runs.is_dir():
        raise TunesmithError(f"--runs {runs}: no such folder")
    from tunesmith import ui as ui_stage

    config = ui_stage.UIConfig(runs=runs, host=host, port=port, api_key_env=api_key_env, queue=queue,
                               serve_url=serve_url, serve_api_key_env=serve_api_key_env)

    def ready(server: ui_stage.Server) -> None:
        typer.echo(f"tunesmith ui on {server.url} (runs: {runs}); Ctrl-C stops", err=True)

    ui_stage.run(config, on_ready=ready)
