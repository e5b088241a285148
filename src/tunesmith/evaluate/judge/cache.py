"""The verdict cache: one SQLite file mapping (judge, rubric, request) -> the judge's raw reply.

Only replies that parsed into a valid verdict are stored, so failures are asked again on a re-run
and a change to the parser applies to cached replies too.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError


def cache_key(model: str, rubric: str, temperature: float, messages: list[dict[str, str]], judge: str = "") -> str:
    """A hash of everything that decides the verdict: judge model, rubric fingerprint, temperature,
    the request (which holds the prompt, reference and reply) and ``judge``, which judge answers
    (``JudgeClient.identity``: endpoint, served weights, reply budget)."""
    payload = json.dumps([model, rubric, temperature, messages, judge], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class VerdictCache:
    """A thread-safe SQLite key -> reply store at ``path`` (created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False)
            with self._lock, self._db:
                self._db.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, reply TEXT NOT NULL, "
                                 "model TEXT, created REAL DEFAULT (julianday('now')))")
                self._db.execute("SELECT key, reply, model FROM verdicts LIMIT 0")  # another program's table
        except (OSError, sqlite3.Error) as exc:
            if getattr(self, "_db", None) is not None:
                self._db.close()
            raise ConfigError(f"judge.cache: {self.path} cannot hold the judge's verdict cache (a SQLite file "
                              f"tunesmith writes): {exc}; point judge.cache at a new file or remove this one") from None

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT reply FROM verdicts WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, reply: str, model: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO verdicts (key, reply, model) VALUES (?, ?, ?)", (key, reply, model))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "VerdictCache":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
