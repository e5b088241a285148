"""The review queue: mined clusters as items a person edits (JSONL or CSV), and their import.

An item: ``id`` (``fw-`` + a hash of its ``request_ids``, so an edited id is caught), ``rank``,
``size`` (requests in the cluster), ``severity`` (the largest signal severity), ``priority`` (size x
severity), ``signals`` (count per kind), ``reasons``, ``request_ids``, ``messages`` (the
representative request without the reply), ``tools`` (the tool definitions its prompt showed),
``reply`` (the model's), ``suggestion`` (a user's correction from feedback, if any), ``members``
(other prompts of the cluster), and the fields the reviewer fills: ``verdict`` (``accept`` the model's
reply, ``correct`` with ``correction``, ``reject``: not something to train on, ``skip``/empty: not
reviewed), ``correction``, ``note``.
A correction without a verdict counts as ``correct``.

``load(path)`` reads a reviewed queue back: malformed lines are reported as ``RowError``s naming
file:line and field, and every other item is kept.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.data.messages import canonical, parse_tools
from tunesmith.data.rows import FieldError
from tunesmith.errors import RowError, TunesmithError
from tunesmith.flywheel import files

VERDICTS = ("accept", "correct", "reject", "skip")
CSV_COLUMNS = ("id", "rank", "size", "priority", "signals", "prompt", "reply", "suggestion", "verdict",
               "correction", "note", "request_ids", "messages", "tools")
_JSON_COLUMNS = ("signals", "request_ids", "messages", "tools")
_NUMBER_COLUMNS = {"rank": int, "size": int, "priority": float}  # CSV cells are text; "10" < "2" as text


def item_id(request_ids: Sequence[str]) -> str:
    return "fw-" + hashlib.sha256("\n".join(request_ids).encode()).hexdigest()[:12]


def rank(clusters: list[list[tuple[Any, list[Any]]]]) -> list[dict[str, Any]]:
    """One item per cluster, highest priority (size x severity) first; ties keep first-seen order."""
    items = [_item(c) for c in clusters]
    items.sort(key=lambda i: -i["priority"])
    for n, item in enumerate(items, 1):
        item["rank"] = n
    return items


def _item(members: list[tuple[Any, list[Any]]]) -> dict[str, Any]:
    from tunesmith.flywheel.mine import prompt_text, request_messages, request_tools

    rep, rep_hits = max(members, key=lambda m: max(h.severity for h in m[1]))  # first of the most severe
    severity = max(h.severity for h in rep_hits)
    counts: dict[str, int] = {}
    reasons: list[str] = []
    for _, hits in members:
        for h in hits:
            counts[h.kind] = counts.get(h.kind, 0) + 1
            if h.reason not in reasons and len(reasons) < 5:
                reasons.append(h.reason)
    ids = [r.id for r, _ in members]
    suggestion = next((f.correction for r, _ in reversed(members) for f in reversed(r.feedback) if f.correction), None)
    messages = request_messages(rep) or [{"role": "user", "content": prompt_text(rep)}]
    return {"id": item_id(ids), "rank": 0, "size": len(members), "severity": severity,
            "priority": round(len(members) * severity, 4), "signals": counts, "reasons": reasons,
            "request_ids": ids, "messages": messages, "tools": request_tools(rep), "reply": rep.reply,
            "suggestion": suggestion,
            "members": [prompt_text(r) for r, _ in members if r is not rep][:10],
            "verdict": None, "correction": None, "note": None}


def write(out: Path, items: list[dict[str, Any]]) -> None:
    """``queue.jsonl`` (every field) and ``queue.csv`` (one row per item; JSON in the list columns)."""
    files.write_jsonl(out / "queue.jsonl", items)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for item in items:
        row = {**item, "prompt": item["messages"][-1]["content"] if item["messages"] else ""}
        writer.writerow({k: json.dumps(row[k], ensure_ascii=False) if k in _JSON_COLUMNS else row.get(k) for k in
                         CSV_COLUMNS})
    files.write_text(out / "queue.csv", buf.getvalue())


@dataclass
class Reviewed:
    """A reviewed queue read back: valid items (any verdict), the malformed lines, the file."""

    path: Path
    items: list[dict[str, Any]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    def decided(self) -> list[dict[str, Any]]:
        return [i for i in self.items if i["verdict"] in ("accept", "correct", "reject")]


def load(path: Path, mined: dict[str, list[str]] | None = None) -> Reviewed:
    """Read a reviewed ``queue.jsonl`` or ``queue.csv``; ``mined`` (mine.json's ``items``, read from
    beside the queue when None) also catches items that were not in the mined queue."""
    path = Path(path)
    if not path.is_file():
        raise TunesmithError(f"{path}: no such review queue")
    if mined is None and (path.parent / "mine.json").is_file():
        mined = json.loads((path.parent / "mine.json").read_text("utf-8")).get("items")
    rows = _csv_rows(path) if path.suffix.lower() == ".csv" else _jsonl_rows(path)
    out = Reviewed(path)
    seen: dict[str, int] = {}
    for line, raw in rows:
        err = raw if isinstance(raw, RowError) else None
        item = None
        if err is None:
            item, err = _check(path, line, raw, mined, seen)
        if err is not None:
            out.errors.append(err)
        else:
            seen[item["id"]] = line
            out.items.append(item)
    return out


def _jsonl_rows(path: Path) -> list[tuple[int, Any]]:
    rows: list[tuple[int, Any]] = []
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        for line, text in enumerate(fh, 1):
            if not text.strip():
                continue
            try:
                rows.append((line, json.loads(text.rstrip("\r\n"))))
            except ValueError as exc:
                rows.append((line, RowError(str(path), None, None, f"not valid JSON ({exc})", line)))
    return rows


def _csv_rows(path: Path) -> list[tuple[int, Any]]:
    rows: list[tuple[int, Any]] = []
    # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a byte-order mark, which would rename the first column
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.DictReader(fh)
        start = 2
        for row in reader:
            line, start = start, reader.line_num + 1
            rows.append((line, _csv_item(path, line, row)))
    return rows


def _csv_item(path: Path, line: int, row: dict[str, Any]) -> Any:
    if None in row:
        return RowError(str(path), None, None, "more cells than the header has columns", line)
    item = {k: (v if v != "" else None) for k, v in row.items()}
    for key in _JSON_COLUMNS:
        try:
            item[key] = json.loads(item[key]) if item.get(key) else None
        except ValueError as exc:
            return RowError(str(path), None, key, f"not valid JSON ({exc})", line)
    for key, kind in _NUMBER_COLUMNS.items():
        try:
            item[key] = kind(item[key]) if item.get(key) is not None else None
        except ValueError:
            pass  # informational columns: an edited cell is kept as written
    return item


def _check(path: Path, line: int, raw: Any, mined: dict[str, list[str]] | None,
           seen: dict[str, int]) -> tuple[dict[str, Any] | None, RowError | None]:
    def bad(field_: str | None, message: str) -> tuple[None, RowError]:
        return None, RowError(str(path), None, field_, message, line)

    if not isinstance(raw, dict):
        return bad(None, f"an item must be a JSON object (got {type(raw).__name__})")
    ids, messages = raw.get("request_ids"), raw.get("messages")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        return bad("request_ids", "must be a non-empty list of request ids")
    if raw.get("id") != item_id(ids):
        return bad("id", f"{raw.get('id')!r} does not match its request_ids (an edited id or request_ids?)")
    if mined is not None and (raw["id"] not in mined or mined[raw["id"]] != ids):
        return bad("id", f"{raw['id']!r} is not an item of the mined queue (mine.json)")
    if raw["id"] in seen:
        return bad("id", f"{raw['id']!r} already on line {seen[raw['id']]}")
    try:  # read as training will read them (system turns, tool calls, text parts)
        messages = canonical(messages, "messages")
    except FieldError as exc:
        return bad(exc.field, exc.message)
    if messages[-1]["role"] not in ("user", "tool"):
        return bad("messages", "must be the request's messages, ending with the turn the reply answers (user or tool)")
    if raw.get("verdict") is not None and not isinstance(raw["verdict"], str):
        return bad("verdict", f"{raw['verdict']!r} is not a verdict ({', '.join(VERDICTS)}, or empty)")
    verdict = (raw.get("verdict") or "").strip().lower() or None
    correction = raw.get("correction")
    if correction is not None and not isinstance(correction, str):
        return bad("correction", f"must be text (got {type(correction).__name__})")
    correction = correction if correction and correction.strip() else None
    if verdict is None and correction:
        verdict = "correct"
    if verdict is not None and verdict not in VERDICTS:
        return bad("verdict", f"{raw.get('verdict')!r} is not a verdict ({', '.join(VERDICTS)}, or empty)")
    if verdict == "correct" and not correction:
        return bad("correction", "verdict 'correct' needs the corrected answer")
    if verdict == "accept" and not (isinstance(raw.get("reply"), str) and raw["reply"].strip()):
        what = "empty" if not raw.get("reply") else f"not text ({type(raw['reply']).__name__})"
        return bad("reply", f"verdict 'accept' needs the model's reply, which is {what}")
    try:
        tools = list(parse_tools(raw.get("tools"), "tools"))
    except FieldError as exc:
        return bad(exc.field, exc.message)
    return {**raw, "messages": messages, "tools": tools or None, "verdict": verdict or None,
            "correction": correction}, None
