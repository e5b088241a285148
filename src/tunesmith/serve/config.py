"""``ServeConfig``: everything ``tunesmith serve`` needs, validated once (frozen pydantic)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


def required_api_key(host: str, api_key_env: str | None) -> str | None:
    """The API key from ``$api_key_env``; refuses a non-loopback ``host`` without one. The one rule
    for every tunesmith server that listens (``serve``, ``ui``)."""
    import os

    from tunesmith.errors import TunesmithError

    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise TunesmithError(f"--api-key-env {api_key_env}: the environment variable is empty or unset")
    if key is None and not is_loopback(host):
        raise TunesmithError(f"--host {host}: refusing to listen beyond this machine without an API key "
                             "(set --api-key-env VAR, with the key in $VAR)")
    return key


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServeConfig(BaseModel):
    """How to serve a model folder (see ``tunesmith serve --help`` for the CLI names)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description="a model folder, run directory, quickstart folder or hub id")
    served_model_name: str | None = Field(None, description="the `model` name clients use (default: the folder name)")
    adapters: dict[str, Path] = Field(default_factory=dict, description="LoRA adapters served by name over the model")
    adapter_roots: tuple[Path, ...] = Field((), description="folders runtime-loaded adapters must live under "
                                                            "(default: the folders of --adapter paths)")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535, description="0 picks a free port")
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    db: Path = Field(Path("serve.sqlite"), description="request and feedback log (SQLite)")
    engine: Literal["tunesmith", "vllm"] = "tunesmith"
    max_batch_size: int = Field(32, ge=1, description="sequences decoded together in one forward")
    max_queue: int = Field(256, ge=1, description="requests waiting for a batch slot before 429")
    max_tokens_limit: int = Field(1024, ge=1, description="largest max_tokens a request may ask for")
    default_max_tokens: int = Field(256, ge=1, description="max_tokens when a request sets none")
    max_n: int = Field(8, ge=1, description="largest n (choices per request)")
    max_request_bytes: int = Field(1_000_000, ge=1024, description="largest request body")
    max_model_len: int | None = Field(None, ge=8, description="context limit (default and maximum: the model's "
                                                              "max_position_embeddings)")
    trust_remote_code: bool = False
    log_commit_timeout_s: float = Field(2.0, gt=0, description="longest wait for a log row before replying anyway")

    @field_validator("adapters")
    @classmethod
    def _names(cls, value: dict[str, Path]) -> dict[str, Path]:
        for name in value:
            if not name or any(c.isspace() for c in name) or name.startswith("__"):
                raise ValueError(f"adapter name {name!r}: must be non-empty, without spaces, not starting with '__'")
        return value

    def roots(self) -> tuple[Path, ...]:
        """Where adapters may be loaded from: the configured roots, else the parents of the given adapters."""
        if self.adapter_roots:
            return tuple(p.resolve() for p in self.adapter_roots)
        return tuple(dict.fromkeys(p.resolve().parent for p in self.adapters.values()))
