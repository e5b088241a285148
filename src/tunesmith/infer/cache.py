"""A cache of greedy generations, so an unchanged model is not asked the same prompt twice.

Evaluating the same base model again (every fine-tune of it is compared with it, the
quickstart does it on every run) costs as much as evaluating the fine-tune. With
``eval_cache: true`` each greedy reply is stored in SQLite under a key made of

* the model's fingerprint (``fingerprint``): every file of its folder -- and of its base
  model's folder for an adapter -- by name, size and modification time, its dtype, and the
  torch / transformers / peft versions; a model re-saved in place gets a new fingerprint;
* the prompt's token ids (so the chat template, the system prompt and the tools are in it),
  ``max_new_tokens`` and the stop ids.

A hit returns the reply generated the first time. Greedy decoding is deterministic for a model
and prompt; what the key leaves out is the batch a prompt was padded in, whose float rounding
can in rare near-ties pick another token. A model loaded by hub id has no fingerprint and is
never cached.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

_TABLE = "generations_v1"


def fingerprint(folders: Iterable[Path], dtype: Any) -> str | None:
    """A key for the model stored in ``folders`` (None when one of them is not a local folder)."""
    import peft
    import torch
    import transformers

    digest = hashlib.sha256(json.dumps([str(dtype), torch.__version__, transformers.__version__,
                                        peft.__version__]).encode())
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            return None
        digest.update(str(folder.resolve()).encode())
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            stat = path.stat()
            digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def for_model(loaded: Any) -> "GenerationCache | None":
    """The shared cache (``$TUNESMITH_CACHE/generations.sqlite``) opened for ``loaded`` (an
    ``infer.Loaded``); None for a model without a fingerprint (loaded by hub id)."""
    from tunesmith.models.cache import cache_root

    key = loaded.fingerprint()
    return GenerationCache(cache_root() / "generations.sqlite", key) if key is not None else None


class GenerationCache:
    """Greedy replies of one model (``model_key``: its ``fingerprint``) in a SQLite file."""

    def __init__(self, path: Path, model_key: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.model_key = path, model_key
        self.hits = 0
        self._db = sqlite3.connect(str(path), timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
                         "finish_reason TEXT NOT NULL, tokens INTEGER NOT NULL)")

    def key(self, prompt: Sequence[int], max_new_tokens: int, eos_ids: Sequence[int]) -> str:
        body = json.dumps([self.model_key, list(prompt), max_new_tokens, sorted(eos_ids), "greedy"])
        return hashlib.sha256(body.encode()).hexdigest()

    def get(self, keys: Sequence[str]) -> dict[str, tuple[str, str, int]]:
        """``{key: (text, finish_reason, tokens)}`` for the keys stored."""
        found: dict[str, tuple[str, str, int]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            part = unique[start : start + 500]
            rows = self._db.execute(f"SELECT key, text, finish_reason, tokens FROM {_TABLE} WHERE key IN "
                                    f"({','.join('?' * len(part))})", part)
            found.update({k: (t, r, n) for k, t, r, n in rows})
        self.hits += sum(1 for k in keys if k in found)
        return found

    def put(self, items: dict[str, tuple[str, str, int]]) -> None:
        with self._db:
            self._db.executemany(f"INSERT OR REPLACE INTO {_TABLE} VALUES (?, ?, ?, ?)",
                                 [(k, *v) for k, v in items.items()])

    def close(self) -> None:
        self._db.close()
