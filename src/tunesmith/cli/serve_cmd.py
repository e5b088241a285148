"""``tunesmith serve MODEL|RUN_DIR``: an OpenAI-compatible server (or the equivalent vLLM command)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tunesmith.errors import TunesmithError

if TYPE_CHECKING:
    from tunesmith.serve.config import ServeConfig

_EXTRA_HINT = "tunesmith serve needs the serve extra: pip install 'tunesmith[serve]' (missing: {})"


def serve(
    model: str = typer.Argument(..., help="A model folder, run directory (model/), quickstart folder (merged/) or hub id."),
    adapter: list[str] = typer.Option([], "--adapter", help="NAME=PATH: also serve this LoRA adapter as model NAME (repeatable)."),
    adapter_root: list[Path] = typer.Option([], "--adapter-root", help="Folder that /v1/load_lora_adapter may load from (repeatable; default: the folders of --adapter paths)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; beyond loopback only with --api-key-env."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on (0: a free one, printed)."),
    api_key_env: str | None = typer.Option(None, "--api-key-env", help="Environment variable holding the API key clients must send (Authorization: Bearer KEY)."),
    db: Path = typer.Option(Path("serve.sqlite"), "--db", help="SQLite file for the request and feedback log."),
    name: str | None = typer.Option(None, "--name", help="The model name clients use (default: the folder name)."),
    engine: str = typer.Option("tunesmith", "--engine", help="tunesmith (this process, on the CPU) or vllm (vLLM on the same folder, for GPUs)."),
    print_only: bool = typer.Option(False, "--print", help="With --engine vllm: print the command instead of running it."),
    max_batch_size: int = typer.Option(32, "--max-batch-size", min=1, help="Sequences decoded together."),
    max_queue: int = typer.Option(256, "--max-queue", min=1, help="Waiting requests before 429."),
    max_tokens_limit: int = typer.Option(1024, "--max-tokens-limit", min=1, help="Largest max_tokens a request may ask for."),
    max_model_len: int | None = typer.Option(None, "--max-model-len", min=8, help="Context limit in tokens (default: the model's max_position_embeddings; a larger value is refused)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Run code shipped with the model (off by default)."),
) -> None:
    """Serve a model with exactly its training chat template, system prompt and stop tokens; log every request."""
    import os

    from pydantic import ValidationError

    from tunesmith.serve.config import ServeConfig

    try:
        config = ServeConfig(model=model, served_model_name=name, adapters=_adapters(adapter),
                             adapter_roots=tuple(adapter_root), host=host, port=port, api_key_env=api_key_env, db=db,
                             engine=engine, max_batch_size=max_batch_size, max_queue=max_queue,
                             max_tokens_limit=max_tokens_limit, max_model_len=max_model_len,
                             trust_remote_code=trust_remote_code)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise TunesmithError(f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}") from None
    if config.engine == "vllm":
        return _vllm(config, print_only)
    if print_only:
        raise TunesmithError("--print goes with --engine vllm")
    _require_extra()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from tunesmith import serve as serve_stage

    def ready(server: object) -> None:
        names = ", ".join(server.state.models.names())  # type: ignore[attr-defined]
        url = server.url  # type: ignore[attr-defined]
        typer.echo(f"serving {names} on {url}/v1 (log: {config.db}); Ctrl-C stops", err=True)

    result = serve_stage.run(config, on_ready=ready)
    typer.echo(f"stopped; {result.requests} requests in {result.db}", err=True)


def _adapters(items: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise TunesmithError(f"--adapter {item!r}: expected NAME=PATH")
        if name in out:
            raise TunesmithError(f"--adapter {name}: given twice")
        out[name] = Path(path)
    return out


def _require_extra() -> None:
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "prometheus_client", "llguidance") if importlib.util.find_spec(m) is None]
    if missing:
        raise TunesmithError(_EXTRA_HINT.format(", ".join(missing)))


def _vllm(config: ServeConfig, print_only: bool) -> None:
    import os
    import shlex
    import shutil
    import subprocess

    from tunesmith.export import vllm
    from tunesmith.serve.state import api_key

    key = api_key(config)
    vllm.write_chat_template(config.model)
    cmd = vllm.command(config.model, {k: str(v) for k, v in config.adapters.items()}, host=config.host,
                       port=config.port, served_model_name=config.served_model_name,
                       max_model_len=config.max_model_len, trust_remote_code=config.trust_remote_code)
    env = vllm.environment(key)
    if print_only:
        shown = {k: f"${config.api_key_env}" if k == "VLLM_API_KEY" else v for k, v in env.items()}
        typer.echo(" ".join([*(f"{k}={v}" for k, v in shown.items()), shlex.join(cmd)]))
        return
    if shutil.which("vllm") is None:
        raise TunesmithError("vllm is not installed here (pip install vllm on a GPU machine); "
                             "--print shows the command to run there")
    raise typer.Exit(subprocess.call(cmd, env={**os.environ, **env}))
