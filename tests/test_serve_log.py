"""The request log: versioned schema, WAL, one writer with group commit, typed reader."""

from __future__ import annotations

import sqlite3

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.serve import read_log
from tunesmith.serve.log import RequestLog, connect, migrations, schema_version


def _row(i, **extra):
    return {"id": f"req-{i}", "created": 1000.0 + i, "endpoint": "chat.completions", "status": 200, "model": "m",
            "messages": '[{"role": "user", "content": "hi"}]', "params": '{"max_tokens": 4}', "reply": f"r{i}",
            "finish_reason": "stop", "choices": "[]", "prompt_tokens": 3, "completion_tokens": 2,
            "latency_ms": 1.5, "mean_logprob": -0.5, **extra}


def test_schema_is_versioned_and_migrated_once(tmp_path):
    path = tmp_path / "log.sqlite"
    conn = connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert schema_version(conn) == migrations()[-1][0] >= 1
    conn.close()
    conn = connect(path)  # reopening applies nothing twice
    assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == len(migrations())
    conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    conn.close()
    with pytest.raises(TunesmithError, match="newer tunesmith"):
        connect(path)


def test_rows_and_feedback_read_back_typed(tmp_path):
    path = tmp_path / "log.sqlite"
    log = RequestLog(path)
    futures = [log.write("requests", _row(i)) for i in range(50)]
    futures.append(log.write("requests", {"id": "req-bad", "created": 2000.0, "endpoint": "completions",
                                          "status": 429, "error": "busy"}))
    futures.append(log.write("feedback", {"request_id": "req-3", "created": 1.0, "rating": "up", "score": 1.0}))
    for future in futures:
        future.result(timeout=10)
    log.close()
    rows = read_log(path)
    assert [r.id for r in rows] == [f"req-{i}" for i in range(50)]  # status 200 only, arrival order
    assert rows[3].messages == [{"role": "user", "content": "hi"}] and rows[3].params == {"max_tokens": 4}
    assert rows[3].feedback[0].rating == "up" and rows[3].score == 1.0 and rows[4].score is None
    everything = read_log(path, status=None)
    assert everything[-1].status == 429 and everything[-1].error == "busy" and everything[-1].choices == []
    assert [r.id for r in read_log(path, since=1040.0)] == [f"req-{i}" for i in range(40, 50)]


def test_a_bad_row_fails_alone_and_the_writer_goes_on(tmp_path):
    log = RequestLog(tmp_path / "log.sqlite")
    first = log.write("requests", _row(1))
    duplicate = log.write("requests", _row(1))  # same primary key
    orphan = log.write("feedback", {"request_id": "req-none", "created": 1.0, "rating": "up", "score": 1.0})
    after = log.write("requests", _row(2))
    first.result(timeout=10)
    after.result(timeout=10)
    with pytest.raises(sqlite3.IntegrityError):
        duplicate.result(timeout=10)
    with pytest.raises(sqlite3.IntegrityError):  # feedback must name a logged request
        orphan.result(timeout=10)
    log.close()
    assert [r.id for r in read_log(tmp_path / "log.sqlite")] == ["req-1", "req-2"]


def test_write_does_not_wait_for_the_disk(tmp_path):
    log = RequestLog(tmp_path / "log.sqlite")
    blocker = sqlite3.connect(str(tmp_path / "log.sqlite"), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    future = log.write("requests", _row(1))
    assert not future.done()  # write() returned while the row cannot be committed yet
    blocker.execute("COMMIT")
    future.result(timeout=30)
    log.close()


def test_reader_errors_are_one_line(tmp_path):
    with pytest.raises(TunesmithError, match="no such request log"):
        read_log(tmp_path / "missing.sqlite")
    (tmp_path / "x.sqlite").write_bytes(b"not a database at all" * 10)
    with pytest.raises(TunesmithError, match="not a tunesmith request log"):
        read_log(tmp_path / "x.sqlite")
