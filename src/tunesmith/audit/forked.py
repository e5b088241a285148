"""Run a function in a forked child process while this one works on, and collect its result.

The audit with a tokenizer has two large, independent pieces of work: rendering and tokenizing
every row (Python rendering, then Rust tokenization in worker threads) and the checks that need
no tokens (pure Python, holding the GIL). In one process they share one interpreter lock; a child
made by ``fork`` (which shares the records copy-on-write, nothing is pickled on the way in) runs
the checks on its own core while this process renders, and sends back only their findings and
statistics.

Only on Linux, where ``fork`` is the platform's own start method, and only from a process running
one Python thread (forking while other threads may hold locks is how children deadlock; a server or
a notebook with threads audits in one process as before). Whatever goes wrong in the child
(an error, a result that does not pickle, a crash), ``Forked.result`` runs the function in this
process instead, so the outcome (the result, or the error raised) is the same as without a child.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def can_fork() -> bool:
    """Linux, ``fork`` available, and no Python thread but this one."""
    return (sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
            and threading.active_count() == 1)


def _child(fn: Callable[[], Any], conn: Connection) -> None:
    try:
        result = fn()
        conn.send((True, result))
    except KeyboardInterrupt:  # Ctrl-C reaches the parent too: it reports it, not the child
        pass
    except Exception:  # the parent runs fn itself and meets the same error there
        with contextlib.suppress(OSError):  # the parent may have stopped listening (cancel)
            conn.send((False, None))
    finally:
        conn.close()


class Forked(Generic[T]):
    """``fn()`` started in a forked child; :meth:`result` waits for it (``fn()`` here if the child failed)."""

    def __init__(self, fn: Callable[[], T]):
        self.fn = fn
        self.from_child = False  # after ``result``: whether the child's result was used
        context = multiprocessing.get_context("fork")
        self._conn, child_conn = context.Pipe(duplex=False)
        self._process = context.Process(target=_child, args=(fn, child_conn), daemon=True,
                                        name="tunesmith-audit-checks")
        self._process.start()
        child_conn.close()

    def result(self) -> T:
        try:
            ok, value = self._conn.recv()
        except Exception:  # the child died without answering, or its answer does not unpickle here
            ok, value = False, None
        finally:
            self._conn.close()
            self._process.join()
        self.from_child = ok
        return value if ok else self.fn()

    def cancel(self) -> None:
        """Stop the child and forget its result (this process failed before asking for it)."""
        self._process.terminate()
        self._conn.close()
        self._process.join()
