"""The request and feedback log: SQLite in WAL mode, written by one thread.

Callers hand rows to :meth:`RequestLog.write`, which returns at once with a future that is set
when the row's transaction has committed. The server awaits that future (bounded by a timeout)
before it sends a reply, so every answered request is on disk even if the process is killed
right after, while the event loop itself never touches SQLite. Rows that queue up while a
commit runs are committed together in the next transaction (group commit).

The schema is versioned: ``migrations/NNN_name.sql`` files are applied in order, each recorded
in ``schema_migrations``.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from concurrent.futures import Future
from importlib import resources
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError

logger = logging.getLogger(__name__)
_STOP = object()


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped with tunesmith, in order."""
    folder = resources.files("tunesmith.serve") / "migrations"
    found = []
    for item in folder.iterdir():
        if item.name.endswith(".sql"):
            version, _, name = item.name[: -len(".sql")].partition("_")
            found.append((int(version), name, item.read_text("utf-8")))
    return sorted(found)


def connect(path: Path) -> sqlite3.Connection:
    """A connection with WAL, foreign keys and a busy timeout; the schema migrated to the latest version."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        raise TunesmithError(f"{path}: cannot open the request log: {exc}") from None
    # NORMAL in WAL mode: a commit is durable against a killed process (the OS has the WAL pages);
    # only a power loss may lose the last transactions
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    _migrate(conn, path)
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                 "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied REAL NOT NULL)")
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    known = migrations()
    newer = done - {v for v, _, _ in known}
    if newer:
        raise TunesmithError(f"{path}: written by a newer tunesmith (schema version {max(newer)}); upgrade tunesmith")
    for version, name, sql in known:
        if version in done:
            continue
        # one script, one transaction: a migration is applied whole or not at all
        script = (f"BEGIN IMMEDIATE;\n{sql}\n;INSERT INTO schema_migrations VALUES "
                  f"({int(version)}, '{name}', {time.time()});\nCOMMIT;")
        try:
            conn.executescript(script)
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0])


class RequestLog:
    """One writer thread over one SQLite file; ``write``/``feedback`` never block the caller."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._conn = connect(self.path)
        self._queue: queue.Queue[Any] = queue.Queue()
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="tunesmith-log", daemon=True)
        self._thread.start()

    def write(self, table: str, row: dict[str, Any]) -> Future[None]:
        """Queue ``row`` for ``table`` ('requests' | 'feedback'); the future is set once it is committed."""
        done: Future[None] = Future()
        self._queue.put((table, row, done))
        return done

    def status(self, request_id: str) -> int | None:
        """The HTTP status a committed request got, None when there is no such request (a read on its own
        short-lived connection)."""
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            row = conn.execute("SELECT status FROM requests WHERE id = ?", (request_id,)).fetchone()
            return None if row is None else int(row[0])
        finally:
            conn.close()

    def close(self) -> None:
        """Commit everything queued, then stop the writer."""
        self._queue.put(_STOP)
        self._thread.join(timeout=30)
        self._conn.close()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:  # group commit: whatever queued up while the last transaction ran
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            self._commit([item for item in batch if item is not _STOP])
            if stop:
                return

    def _commit(self, items: list[tuple[str, dict[str, Any], Future[None]]]) -> None:
        if not items:
            return
        try:
            self._conn.execute("BEGIN")
            for table, row, _ in items:
                self._insert(table, row)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if len(items) > 1:  # one bad row must not lose its neighbours
                for item in items:
                    self._commit([item])
                return
            self.failures += 1
            logger.error("request log: cannot write a %s row: %s", items[0][0], exc)
            items[0][2].set_exception(exc)
            return
        for _, _, done in items:
            done.set_result(None)

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        if table not in ("requests", "feedback"):
            raise ValueError(f"unknown table {table!r}")
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self._conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(row.values()))
