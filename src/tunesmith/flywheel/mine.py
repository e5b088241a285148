"""Mine the request log: requests that raised a signal, clustered, ranked, as a review queue.

``mine(MineOptions)`` reads ``serve.read_log`` rows, asks the judge once for all of them when one
is configured, runs every detector of ``signals.SIGNALS``, clusters the flagged requests by their
prompt with the audit's MinHash near-duplicate search (one cluster = one review item, with its
size) and ranks clusters by size x severity. Writes ``queue.jsonl`` + ``queue.csv`` (see
``queue.py``), ``positives.jsonl`` (production replies good enough to train on again) and
``mine.json`` (options, counts per signal, every item's id).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config.schema import JudgeConfig
from tunesmith.errors import TunesmithError
from tunesmith.flywheel import files, queue
from tunesmith.flywheel.signals import SIGNALS, Context, Hit, default_settings, detect, is_positive
from tunesmith.serve.reader import LoggedRequest, read_log


@dataclass(frozen=True)
class MineOptions:
    db: Path
    out: Path
    since: float | None = None
    model: str | None = None
    kinds: tuple[str, ...] = ()  # empty: every signal
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # overrides of signals.yaml
    cluster_threshold: float = 0.8  # Jaccard of word 2-gram shingles of the prompts
    judge: JudgeConfig | None = None
    overwrite: bool = False


@dataclass
class MineResult:
    out: Path
    requests: int
    flagged: int
    items: list[dict[str, Any]]
    positives: int
    signals: dict[str, int]
    files: list[Path]


def check_schema(db: Path) -> int:
    """The log's schema version; an error naming it when this tunesmith does not read that version."""
    from tunesmith.serve.log import migrations

    if not db.is_file():
        raise TunesmithError(f"{db}: no such request log")
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            versions = {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise TunesmithError(f"{db}: not a tunesmith request log ({exc})") from None
    known = {v for v, _, _ in migrations()}
    found = max(versions, default=0)
    if versions != known:
        newer = "a newer tunesmith: upgrade tunesmith" if found > max(known) else \
            "an older tunesmith: open it once with `tunesmith serve --db` to migrate it"
        raise TunesmithError(f"{db}: request log schema version {found} (this tunesmith reads version "
                             f"{max(known)}); written by {newer}")
    return found


def request_messages(req: LoggedRequest) -> list[dict[str, Any]] | None:
    """A chat request's messages as a training row holds them (``data.messages.canonical``: its own system turn
    kept, text parts joined, tool calls as training reads them); None for a completions request or messages
    that do not parse."""
    from tunesmith.data.messages import canonical
    from tunesmith.data.rows import FieldError

    if not req.messages:
        return None
    try:
        return canonical(req.messages)
    except FieldError:
        return None


def request_tools(req: LoggedRequest) -> list[dict[str, Any]] | None:
    """The tool definitions the served prompt showed (``tools``, unless ``tool_choice`` was 'none', as
    ``serve.routes`` renders them), as training reads them; None without any (or when they do not parse)."""
    from tunesmith.data.messages import parse_tools
    from tunesmith.data.rows import FieldError

    params = req.params or {}
    if params.get("tool_choice") == "none":
        return None
    try:
        return list(parse_tools(params.get("tools"), "tools")) or None
    except FieldError:
        return None


def prompt_text(req: LoggedRequest) -> str:
    """The text a request asked: its non-system messages (chat) or its prompt (completions)."""
    messages = request_messages(req)
    if messages is not None:
        return "\n".join(m["content"] for m in messages if m["role"] != "system")
    if req.messages:
        return "\n".join(str(m.get("content") or "") for m in req.messages if m.get("role") != "system")
    return req.prompt if isinstance(req.prompt, str) else "\n".join(map(str, req.prompt or []))


def mine(options: MineOptions) -> MineResult:
    """Flag, cluster and rank the logged requests; write the review queue (refusing to replace one)."""
    unknown = sorted(set(options.kinds) - set(SIGNALS))
    if unknown:
        raise TunesmithError(f"unknown signal(s) {', '.join(unknown)} (signals: {', '.join(SIGNALS)})")
    if "judge_score" in options.kinds and options.judge is None:
        raise TunesmithError("signal judge_score needs a judge (--judge-url and --judge-model)")
    outputs = [options.out / n for n in ("queue.jsonl", "queue.csv", "positives.jsonl", "mine.json")]
    files.require_folder(options.out)
    files.refuse_overwrite(outputs, options.overwrite, "a mined queue")
    check_schema(options.db)
    requests = read_log(options.db, since=options.since, model=options.model)
    ctx = Context(_settings(options.settings))
    if options.judge is not None and (not options.kinds or "judge_score" in options.kinds):
        ctx.judged = judge_requests(options.judge, requests, options.out)
    kinds = list(options.kinds) or [k for k in SIGNALS if k != "judge_score" or options.judge is not None]
    flagged = [(r, hits) for r in requests if (hits := detect(r, ctx, kinds))]
    items = queue.rank(cluster(flagged, options.cluster_threshold))
    # a positive raises no signal this run queues, nor any failure signal (signals.yaml) it does not queue
    failures = [k for k in SIGNALS if k in kinds or ctx.settings[k]["failure"]]
    positives = [row for r in requests if (why := _positive(r, ctx, failures)) and (row := _positive_row(r, why))]
    counts = {k: sum(any(h.kind == k for h in hits) for _, hits in flagged) for k in kinds}
    queue.write(options.out, items)
    files.write_jsonl(options.out / "positives.jsonl", positives)
    files.write_json(options.out / "mine.json", {
        "db": str(options.db.resolve()), "db_sha256": files.sha256(options.db), "created": time.time(),
        "since": options.since, "model": options.model, "signals": kinds, "settings": ctx.settings,
        "cluster_threshold": options.cluster_threshold, "requests": len(requests), "flagged": len(flagged),
        "counts": counts, "positives": len(positives), "items": {i["id"]: i["request_ids"] for i in items}})
    return MineResult(options.out, len(requests), len(flagged), items, len(positives), counts, outputs)


def _settings(overrides: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    merged = {k: dict(v) for k, v in default_settings().items()}
    for kind, values in overrides.items():
        if kind not in merged:
            raise TunesmithError(f"signal settings: unknown signal {kind!r} (signals: {', '.join(merged)})")
        bad = sorted(set(values) - set(merged[kind]))
        if bad:
            raise TunesmithError(f"signal settings: {kind}.{bad[0]}: unknown key (keys: {', '.join(merged[kind])})")
        merged[kind].update(values)
    return merged


def _positive(req: LoggedRequest, ctx: Context, kinds: list[str]) -> str | None:
    return None if not req.reply or not req.messages or detect(req, ctx, kinds) else is_positive(req, ctx)


def _positive_row(req: LoggedRequest, why: str) -> dict[str, Any] | None:
    """The request as a training row: its messages as training reads them (its own system prompt kept: the reply
    was given under it; without one, training adds the run's, which the server used too) and the reply; None
    when its messages are not readable as training messages."""
    messages = request_messages(req)
    if messages is None:
        return None
    tools = request_tools(req)
    return {"messages": [*messages, {"role": "assistant", "content": req.reply}], **({"tools": tools} if tools else {}),
            "meta": {"origin": "flywheel:positive", "request_id": req.id, "reason": why}}


def cluster(flagged: list[tuple[LoggedRequest, list[Hit]]], threshold: float) -> list[list[tuple[LoggedRequest, list[Hit]]]]:
    """Groups of near-duplicate prompts (union of MinHash pairs with Jaccard >= threshold), in first-seen order."""
    from tunesmith.audit.guidelines import load_guidelines
    from tunesmith.audit.minhash import near_duplicates

    g = load_guidelines()["near_duplicate"]
    parent = list(range(len(flagged)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    texts = [prompt_text(r) for r, _ in flagged]
    for i, j, _ in near_duplicates(texts, threshold, ngram=g["ngram"], num_perm=g["num_perm"],
                                   margin=g["lsh_margin"], seed=g["seed"]):
        a, b = root(i), root(j)
        parent[max(a, b)] = min(a, b)
    groups: dict[int, list[tuple[LoggedRequest, list[Hit]]]] = {}
    for i, pair in enumerate(flagged):
        groups.setdefault(root(i), []).append(pair)
    return list(groups.values())


def judge_requests(config: JudgeConfig, requests: list[LoggedRequest], out: Path) -> dict[str, float]:
    """Request id -> the judge's mean criterion score, for every request with a reply (one batch)."""
    from tunesmith.evaluate.judge.client import open_client
    from tunesmith.evaluate.judge.rubric import fingerprint, load_rubric, rubric_messages
    from tunesmith.evaluate.judge.verdict import parse_rubric, rubric_format

    rubric = load_rubric(config.rubric)
    asked = [r for r in requests if r.reply]
    client = open_client(config, fingerprint(rubric), out / "judge_cache.sqlite")
    try:
        outcomes = client.ask_many([rubric_messages(rubric, prompt_text(r), r.reply or "", None) for r in asked],
                                   lambda text: parse_rubric(text, rubric), rubric_format(rubric))
    finally:
        client.close()
    return {r.id: sum(o.value["scores"].values()) / len(o.value["scores"])
            for r, o in zip(asked, outcomes) if not o.failed}
