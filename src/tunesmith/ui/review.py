"""The flywheel review queue: one JSON object per line, decided one by one in the browser.

Format (the file the flywheel writes and the Review page updates in place)::

    {"id": "q-17", "request": <str | list of chat messages>, "reply": "<the model's reply>",
     "reason": "<why it was mined>", "cluster_size": 12, "verdict": null, "correction": null}

The queue ``tunesmith flywheel mine`` writes (``queue.jsonl``) is read as is: its ``messages``,
``reasons`` and ``size`` stand for ``request``, ``reason`` and ``cluster_size``, and its verdicts are
the same four, so ``tunesmith flywheel build --reviewed`` takes the file the page decided.

``verdict`` is null until a person decides, then one of ``accept`` (the reply is good), ``correct``
(``correction`` holds the right reply), ``skip`` (undecided, asked again later) or ``reject`` (the
item is not worth training on). Any other keys of an item are kept as they are. Every decision
rewrites the whole file through a temporary file + ``os.replace`` (after ``fsync``, then the
folder's ``fsync``), so a reader sees the old file or the new one, never half of one, and a closed
tab loses nothing. The read-modify-replace holds an exclusive ``flock`` on ``.<name>.lock`` beside
the queue; another writer (the flywheel adding items) takes the same lock so neither loses the
other's lines.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError

VERDICTS = ("accept", "correct", "skip", "reject")
REQUIRED = ("id", "reply")
REQUEST = ("request", "messages")  # an item has one of these: a mined item's messages stand for request
_LOCK = threading.Lock()


class QueueError(TunesmithError):
    """A queue file that cannot be read, or a decision that cannot be applied."""


def read(path: Path) -> list[dict[str, Any]]:
    """Every item of the queue file (a missing file is an empty queue); bad lines name file:line."""
    if not path.is_file():
        return []
    items, seen = [], set()
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QueueError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(item, dict):
            raise QueueError(f"{path}:{number}: expected a JSON object")
        missing = [k for k in REQUIRED if k not in item]
        if not any(k in item for k in REQUEST):
            missing.insert(1, " or ".join(REQUEST))
        if missing:
            raise QueueError(f"{path}:{number}: missing {', '.join(missing)}")
        if str(item["id"]) in seen:
            raise QueueError(f"{path}:{number}: id {item['id']!r} appears twice")
        if item.get("verdict") not in (None, *VERDICTS):
            raise QueueError(f"{path}:{number}: verdict: must be one of {', '.join(VERDICTS)} or null "
                             f"(got {item['verdict']!r})")
        seen.add(str(item["id"]))
        items.append(item)
    return items


def pending(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items still to review: undecided first, then skipped ones."""
    return [i for i in items if i.get("verdict") is None] + [i for i in items if i.get("verdict") == "skip"]


def counts(items: list[dict[str, Any]]) -> dict[str, int]:
    """Items per verdict (``undecided`` for null) and the total."""
    out = {v: 0 for v in ("undecided", *VERDICTS)}
    for item in items:
        out[item.get("verdict") or "undecided"] += 1
    return {**out, "total": len(items), "done": len(items) - out["undecided"] - out["skip"]}


def decide(path: Path, item_id: str, verdict: str, correction: str | None = None) -> dict[str, Any]:
    """Record ``verdict`` (and the correction) for item ``item_id`` and rewrite the file atomically;
    returns the updated item."""
    if verdict not in VERDICTS:
        raise QueueError(f"verdict: must be one of {', '.join(VERDICTS)} (got {verdict!r})")
    if verdict == "correct" and not (correction or "").strip():
        raise QueueError("correct: the correction is empty; type the right reply first")
    with _LOCK, locked(path):
        items = read(path)
        match = [i for i in items if str(i["id"]) == str(item_id)]
        if not match:
            raise QueueError(f"{path}: no item with id {item_id!r}")
        match[0]["verdict"] = verdict
        match[0]["correction"] = correction if verdict == "correct" else None
        write(path, items)
    return match[0]


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the queue's exclusive file lock (``.<name>.lock`` in the same folder)."""
    import fcntl

    with open(path.with_name(f".{path.name}.lock"), "a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write(path: Path, items: list[dict[str, Any]]) -> None:
    """Replace the queue file with ``items`` atomically (temporary file in the same folder, fsync, rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for item in items:
                fh.write(json.dumps(item, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a crash
        finally:
            os.close(folder)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
