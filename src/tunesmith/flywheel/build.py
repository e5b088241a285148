"""Build the next training set from a reviewed queue.

Rows, in this order of precedence: reviewed failures (``correct``: the reviewer's answer;
``accept``: the model's reply, confirmed), a share of production positives (``positives.jsonl``
from mining: thumbs-up, high confidence), and a replay sample of the original training data
against forgetting (``replay_ratio`` of the final set). Then: near-duplicates removed (the
audit's MinHash; the earlier row wins), rows that copy any eval/golden row removed (the
evaluation stage's contamination test, from the training side), the audit run on what is left.
Writes ``train.jsonl`` (chat rows, each with ``meta.origin``; also split into ``parts/new.jsonl`` and
``parts/replay.jsonl``), ``removed.jsonl`` (every row left
out and why), ``audit.json`` and ``manifest.json`` (counts per source, fingerprints, the queue and
mining run it came from). An existing dataset is never replaced without ``overwrite``.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config.schema import DatasetSpec
from tunesmith.data.records import Record, Source
from tunesmith.errors import RowError, TunesmithError, location
from tunesmith.flywheel import files, queue

_WORD = re.compile(r"\w+")
OUTPUTS = ("train.jsonl", "manifest.json", "removed.jsonl", "audit.json")


@dataclass(frozen=True)
class BuildOptions:
    reviewed: Path
    out: Path
    base_data: tuple[DatasetSpec, ...] = ()
    eval_data: tuple[DatasetSpec, ...] = ()
    positives: Path | None = None  # default: positives.jsonl beside the queue
    positives_share: float = 0.25  # positives per reviewed row
    replay_ratio: float = 0.1  # share of the final set drawn from base_data
    mix_temperature: float = 1.0  # the original run's, for its per-dataset shares (stratified replay)
    near_threshold: float = 0.85
    seed: int = 0
    overwrite: bool = False


@dataclass
class BuildResult:
    out: Path
    counts: dict[str, int]
    removed: list[dict[str, Any]]
    review_errors: list[RowError]
    audit: dict[str, Any]
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def train_file(self) -> Path:
        return self.out / "train.jsonl"


def build(options: BuildOptions) -> BuildResult:
    """Assemble, deduplicate, decontaminate and audit the next training set; write it with its manifest."""
    _check(options)
    files.require_folder(options.out)
    files.refuse_overwrite([options.out / n for n in OUTPUTS], options.overwrite, "a built dataset")
    reviewed = queue.load(options.reviewed)
    rng = random.Random(options.seed)
    rows = _reviewed_rows(reviewed.items)
    n_reviewed = len(rows)
    rows += _positives(_positives_path(options), round(options.positives_share * n_reviewed), rng)
    rows, dupes = _dedup(rows, options.near_threshold)
    evals = _ingest(options.eval_data)
    rows, contaminated = _decontaminate(rows, evals, options.near_threshold)
    strata, left_out = _replayable([_ingest((spec,)) for spec in options.base_data], rows, evals,
                                   options.near_threshold)
    count = _replay_count(len(rows), options.replay_ratio, sum(map(len, strata)))
    per_dataset = _replay_shares(options.base_data, strata, count, options.mix_temperature)
    rows += _replay(strata, per_dataset, rng)
    if not rows:
        raise TunesmithError(_empty_reason(contaminated))
    records = [_record(r, n) for n, r in enumerate(rows, 1)]
    audit = _audit(records)
    counts = {origin: sum(1 for r in rows if r["meta"]["origin"] == origin) for origin in
              ("flywheel:correction", "flywheel:accepted", "flywheel:positive", "replay")}
    removed = dupes + contaminated + left_out
    counts.update(total=len(rows), duplicates_removed=len(dupes),
                  contaminated_removed=sum(r["reason"] == "contaminated" for r in removed),
                  replay_superseded=sum(r["reason"] == "superseded" for r in removed))
    options.out.mkdir(parents=True, exist_ok=True)
    files.write_jsonl(options.out / "train.jsonl", rows)
    # the same rows in two parts, for training with dataset mixing (flywheel run's replay_weight)
    files.write_jsonl(options.out / "parts" / "new.jsonl", [r for r in rows if r["meta"]["origin"] != "replay"])
    files.write_jsonl(options.out / "parts" / "replay.jsonl", [r for r in rows if r["meta"]["origin"] == "replay"])
    files.write_jsonl(options.out / "removed.jsonl", removed)
    files.write_json(options.out / "audit.json", audit)
    manifest = _manifest(options, reviewed.path, counts, audit, reviewed.errors)
    manifest["replay_per_dataset"] = {s.path: n for s, n in zip(options.base_data, per_dataset)}
    files.write_json(options.out / "manifest.json", manifest)
    return BuildResult(options.out, counts, removed, reviewed.errors, audit, manifest)


def _check(options: BuildOptions) -> None:
    if not 0 <= options.replay_ratio < 1:
        raise TunesmithError(f"replay ratio must be in [0, 1) (got {options.replay_ratio})")
    if options.positives_share < 0:
        raise TunesmithError(f"positives share must be >= 0 (got {options.positives_share})")
    if options.replay_ratio > 0 and not options.base_data:
        raise TunesmithError("a replay share needs the original training data (--base-data), or set the replay ratio to 0")


def _reviewed_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for item in items:
        if item["verdict"] not in ("correct", "accept"):
            continue
        answer = item["correction"] if item["verdict"] == "correct" else item["reply"]
        origin = "flywheel:correction" if item["verdict"] == "correct" else "flywheel:accepted"
        tools = {"tools": item["tools"]} if item.get("tools") else {}  # as the served prompt showed them
        rows.append({"messages": [*item["messages"], {"role": "assistant", "content": answer}], **tools,
                     "meta": {"origin": origin, "item": item["id"], "request_ids": item["request_ids"]}})
    return rows


def _positives_path(options: BuildOptions) -> Path | None:
    if options.positives is not None:  # named: it must be there (a typo would silently add no positives)
        if not Path(options.positives).is_file():
            raise TunesmithError(f"{options.positives}: no such positives file")
        return Path(options.positives)
    path = Path(options.reviewed).parent / "positives.jsonl"
    return path if path.is_file() else None


def _positives(path: Path | None, wanted: int, rng: random.Random) -> list[dict[str, Any]]:
    if path is None or wanted <= 0:
        return []
    rows = []
    with open(path, encoding="utf-8-sig") as fh:
        for line, text in enumerate(fh, 1):
            if text.strip():
                rows.append(_positive_row(text, location(str(path), line=line)))
    picked = rng.sample(rows, min(wanted, len(rows)))
    return [{**r, "meta": {**(r.get("meta") or {}), "origin": "flywheel:positive"}} for r in picked]


def _positive_row(text: str, where: str) -> dict[str, Any]:
    """One line of positives.jsonl, checked as training will read it (a user mistake names line and field)."""
    from tunesmith.data.messages import parse_messages, parse_tools, request_context
    from tunesmith.data.rows import FieldError

    try:
        row = json.loads(text)
    except ValueError as exc:
        raise TunesmithError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(row, dict) or not isinstance(row.get("messages"), list):
        raise TunesmithError(f"{where}: messages: a positive row needs its chat messages")
    try:
        messages = parse_messages(row["messages"], "messages", request_context())
        tools = parse_tools(row.get("tools"), "tools")
    except FieldError as exc:
        raise TunesmithError(f"{where}: {exc}") from None
    if messages[-1].role != "assistant":
        raise TunesmithError(f"{where}: messages: a positive row ends with the assistant's reply")
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else None
    return {"messages": row["messages"], **({"tools": list(tools)} if tools else {}), "meta": meta}


def _replay_count(new_rows: int, ratio: float, available: int) -> int:
    # rounded first: 5 x 0.8 / 0.2 is 20.000000000000004 in floating point, which is 20 rows, not 21
    return min(available, math.ceil(round(new_rows * ratio / (1 - ratio), 9))) if ratio > 0 else 0


def _ingest(specs: tuple[DatasetSpec, ...]) -> list[Record]:
    from tunesmith.data import ingest

    return [r for r in ingest(list(specs)).records if r.kind == "sft"] if specs else []


def _replay_shares(specs: tuple[DatasetSpec, ...], strata: list[list[Record]], count: int,
                   temperature: float) -> list[int]:
    """Replay rows per dataset of the original run, stratified: each dataset keeps the share of the
    training set it had in that run (its rows, ``weight``, ``sample_ratio``, ``mix_temperature``:
    the data stage's own mix), by largest remainder, never more than its rows. A random sample of
    the union would let a small task (a few dozen rows) fall short by chance, and with it the
    protection against forgetting that task."""
    from tunesmith.data.mix import targets

    sizes = [len(s) for s in strata]
    wanted = targets(specs, sizes, temperature) if specs else []
    out = [0] * len(sizes)
    while (left := count - sum(out)) > 0:  # count <= sum(sizes): _replay_count caps it
        open_ = [i for i in range(len(sizes)) if out[i] < sizes[i]]
        mass = {i: wanted[i] for i in open_ if wanted[i] > 0} or {i: 1 for i in open_}
        exact = {i: left * m / sum(mass.values()) for i, m in mass.items()}
        give = {i: min(sizes[i] - out[i], int(x)) for i, x in exact.items()}
        for i in sorted(exact, key=lambda i: int(exact[i]) - exact[i]):  # largest remainder first
            if sum(give.values()) < left and out[i] + give[i] < sizes[i]:
                give[i] += 1
        for i, n in give.items():
            out[i] += n
    return out


def _replay(strata: list[list[Record]], per_dataset: list[int], rng: random.Random) -> list[dict[str, Any]]:
    return [_replay_row(records[i]) for records, count in zip(strata, per_dataset)
            for i in sorted(rng.sample(range(len(records)), count))]


def _replay_row(record: Record) -> dict[str, Any]:
    messages = [{**m.to_dict(), **({"loss_weight": m.weight} if m.weight is not None else {})}
                for m in record.messages]  # the row's own loss weights travel with it
    tools = {"tools": list(record.tools)} if record.tools else {}  # its prompt shows them
    return {"messages": messages, **tools, "meta": {"origin": "replay", "source": str(record.source)}}


def _replayable(strata: list[list[Record]], new_rows: list[dict[str, Any]], evals: list[Record],
                threshold: float) -> tuple[list[list[Record]], list[dict[str, Any]]]:
    """The original training rows replay may draw from, per dataset, and every row it may not, with why:
    a copy of an eval row (the evaluation stays held out), or a row a new row supersedes (the same prompt, or
    a near copy: the reviewed answer must not meet the old answer it corrects). Left out before sampling, so
    the replay share holds."""
    from tunesmith.audit.contamination import training_rows_in
    from tunesmith.audit.minhash import near_duplicates

    flat = [r for stratum in strata for r in stratum]
    rows = [_replay_row(r) for r in flat]
    out = {i: _contaminated(rows[i], hit, evals)
           for i, hit in (training_rows_in(flat, evals, threshold) if evals and flat else {}).items()}
    newer = {_prompt(r): r["meta"] for r in reversed(new_rows)}
    for i, row in enumerate(rows):
        if i not in out and (meta := newer.get(_prompt(row))) is not None:
            out[i] = {"reason": "superseded", "similarity": 1.0, "kept": meta, **row}
    n = len(new_rows)
    for a, b, sim in near_duplicates([_text(r) for r in new_rows + rows], threshold) if n and rows else ():
        if a < n <= b and b - n not in out:
            out[b - n] = {"reason": "superseded", "similarity": round(sim, 4), "kept": new_rows[a]["meta"], **rows[b - n]}
    kept, start = [], 0
    for stratum in strata:
        kept.append([r for k, r in enumerate(stratum, start) if k not in out])
        start += len(stratum)
    return kept, [out[i] for i in sorted(out)]


def _prompt(row: dict[str, Any]) -> str:
    """What a row asks (every turn before its final answer, system turns aside), as its words: case, spacing and
    punctuation aside ("Rate the weather in Oslo!" asks what "rate the weather in oslo" asks)."""
    return "\x00".join(f"{m.get('role')}:{' '.join(_WORD.findall(str(m.get('content') or '').casefold()))}"
                       for m in row["messages"][:-1] if m.get("role") != "system")


def _record(row: dict[str, Any], n: int) -> Record:
    """The row as training will read it (tool calls, loss weights, text parts): what the audit must see."""
    from tunesmith.data.messages import parse_messages, parse_tools, request_context

    messages = parse_messages(row["messages"], "messages", request_context())
    return Record(kind="sft", source=Source("train.jsonl", n, n), fmt="chat", messages=messages,
                  tools=parse_tools(row.get("tools"), "tools"))


def _text(row: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content") or "") for m in row["messages"] if m.get("role") != "system")


def _dedup(rows: list[dict[str, Any]], threshold: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from tunesmith.audit.minhash import near_duplicates

    drop: dict[int, tuple[int, float]] = {}
    for i, j, sim in near_duplicates([_text(r) for r in rows], threshold):
        if i not in drop and j not in drop:
            drop[j] = (i, sim)
    removed = [{"reason": "near_duplicate", "similarity": round(sim, 4), "kept": rows[i]["meta"], **rows[j]}
               for j, (i, sim) in sorted(drop.items())]
    return [r for n, r in enumerate(rows) if n not in drop], removed


def _decontaminate(rows: list[dict[str, Any]], evals: list[Record],
                   threshold: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from tunesmith.audit.contamination import training_rows_in

    if not evals:
        return rows, []
    hits = training_rows_in([_record(r, n) for n, r in enumerate(rows, 1)], evals, threshold)
    removed = [_contaminated(rows[i], hit, evals) for i, hit in sorted(hits.items())]
    return [r for n, r in enumerate(rows) if n not in hits], removed


def _contaminated(row: dict[str, Any], hit: tuple[int, str, float], evals: list[Record]) -> dict[str, Any]:
    """The removed.jsonl entry of ``row``, which copies ``evals[hit[0]]`` (``training_rows_in``'s hit)."""
    j, kind, sim = hit
    return {"reason": "contaminated", "kind": kind, "similarity": sim, "eval_row": str(evals[j].source), **row}

def _empty_reason(contaminated: list[dict[str, Any]]) -> str:
    """Why the built dataset is empty, as it happened: nothing to build from, or every row an eval row's copy
    (deduplication keeps the first of each group, so it never empties the set by itself)."""
    if not contaminated:
        return ("the built dataset is empty: no reviewed item has a verdict 'correct' or 'accept', and no positives "
                "or replay rows were added")
    first = contaminated[0]
    asked = next((m.get("content") for m in first.get("messages", []) if m.get("role") == "user"), "")
    return (f"the built dataset is empty: all {len(contaminated)} rows copy an eval row (first: {str(asked)[:60]!r}, "
            f"like {first['eval_row']}) and were removed so the evaluation stays held out")


def _audit(records: list[Record]) -> dict[str, Any]:
    from tunesmith.audit.runner import audit_records

    report = audit_records(records)
    return {"rows": len(records), "findings": [{"check": f.check, "severity": f.severity, "count": f.count, "message": f.message}
                                               for f in report.findings]}


def _manifest(options: BuildOptions, queue_path: Path, counts: dict[str, int], audit: dict[str, Any],
              errors: list[RowError]) -> dict[str, Any]:
    from tunesmith.data.ingest import specs_fingerprint

    mine_json = Path(queue_path).parent / "mine.json"
    mined = json.loads(mine_json.read_text("utf-8")) if mine_json.is_file() else {}
    return {
        "created": time.time(), "counts": counts,
        "from": {"queue": str(Path(queue_path).resolve()), "queue_sha256": files.sha256(Path(queue_path)),
                 "mine": str(mine_json.resolve()) if mined else None, "db": mined.get("db"),
                 "db_sha256": mined.get("db_sha256")},
        "fingerprints": {"train.jsonl": files.sha256(options.out / "train.jsonl"),
                         "base_data": specs_fingerprint(list(options.base_data), "sft") if options.base_data else None,
                         "eval_data": specs_fingerprint(list(options.eval_data), "sft") if options.eval_data else None},
        "options": {"positives_share": options.positives_share, "replay_ratio": options.replay_ratio,
                    "near_threshold": options.near_threshold, "seed": options.seed,
                    "base_data": [s.path for s in options.base_data], "eval_data": [s.path for s in options.eval_data]},
        "review_errors": [str(e) for e in errors],
        "audit": {"errors": sum(f["severity"] == "error" for f in audit["findings"]),
                  "warnings": sum(f["severity"] == "warning" for f in audit["findings"])},
    }
