"""Exact and near duplicates within a split, and rows shared between splits."""

from __future__ import annotations

import hashlib
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunesmith.config.schema import AuditConfig
from tunesmith.audit.context import SPLITS, AuditContext, Views
from tunesmith.audit.minhash import near_duplicates, with_copies
from tunesmith.audit.registry import register
from tunesmith.audit.report import Finding, location


@dataclass(frozen=True)
class _RowKeys:
    """Per row, computed in one pass and shared by the duplicate checks: the record kind, digests of
    the pair / prompt / response keys (``b""``: an empty prompt) and the response's word count."""

    kind: list[str]
    pair: np.ndarray  # "S16": 16 bytes a row, read back as bytes (trailing zero bytes dropped, still unique)
    prompt: np.ndarray
    response: np.ndarray
    words: np.ndarray


def _row_keys(ctx: AuditContext) -> _RowKeys:
    if "row_keys" not in ctx.cache:
        n = len(ctx.records)
        out = _RowKeys([], *(np.zeros(n, dtype="S16") for _ in range(3)), np.zeros(n, dtype=np.int64))
        out.kind.extend(ctx.views.kind)
        for i in range(n):
            prompt, response, pair = _keys(ctx, i)
            out.pair[i] = _digest(pair)
            out.prompt[i] = _digest(prompt) if prompt else b""
            out.response[i] = _digest(response)
            out.words[i] = len(response.split())
        ctx.cache["row_keys"] = out
    keys: _RowKeys = ctx.cache["row_keys"]
    return keys


def _keys(ctx: AuditContext, i: int) -> tuple[str, str, str]:
    """(prompt, response, pair) keys of row i; the pair includes a preference row's rejected side."""
    v = ctx.views
    prompt, response = v.prompt[i].strip(), v.response[i].strip()
    return prompt, response, f"{prompt}\x00{response}\x00{v.rejected[i].strip()}"


def _digest(key: str) -> bytes:
    """What the duplicate checks remember of a key: 16 bytes, not the text (a million rows fit). Unicode NFC
    first: the same text with an accent composed or decomposed is the same row."""
    key = unicodedata.normalize("NFC", key)
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class _Joined(Sequence[str]):
    """Prompt and response of every row, joined when read (the near-duplicate texts)."""

    def __init__(self, views: Views):
        self.views = views

    def __len__(self) -> int:
        return len(self.views.prompt)

    def __getitem__(self, index: Any) -> Any:
        v = self.views
        if isinstance(index, slice):
            return [f"{p}\n{r}" for p, r in zip(v.prompt[index], v.response[index])]
        return f"{v.prompt[index]}\n{v.response[index]}"


def threshold(ctx: AuditContext) -> float:
    audit = ctx.config.audit if ctx.config is not None else AuditConfig.model_validate({})
    return float(audit.near_duplicate_threshold)


def near_pairs(ctx: AuditContext) -> list[tuple[int, int, float]]:
    """Near-duplicate pairs (i, j, jaccard) over prompt + response of all splits (train first)."""
    cache = ctx.cache
    if "near_pairs" not in cache:
        g = ctx.g("near_duplicate")
        cache["near_pairs"] = near_duplicates(
            _Joined(ctx.views), threshold(ctx), ngram=g["ngram"], num_perm=g["num_perm"], margin=g["lsh_margin"],
            seed=g["seed"],
        )
    pairs: list[tuple[int, int, float]] = cache["near_pairs"]
    return pairs


@register("exact_duplicate")
def exact_duplicate(ctx: AuditContext) -> Finding | None:
    """Rows repeating an earlier row of the same split: the whole pair, only the prompt, or only
    a (long enough) response."""
    min_words = ctx.g("exact_duplicate")["min_response_words"]
    kinds: Counter[str] = Counter()
    rows = []
    for split in ctx.present_splits():
        seen: dict[str, dict[bytes, int]] = {"pair": {}, "prompt": {}, "response": {}}
        keys = _row_keys(ctx)
        for i in ctx.indices(split):
            checks = [("pair", keys.pair[i])]
            # KTO data gives a prompt several completions, each labelled, by design: not label noise
            if keys.kind[i] == "sft" and keys.prompt[i]:
                checks.append(("prompt", keys.prompt[i]))
            if keys.kind[i] != "text" and keys.words[i] >= min_words:
                checks.append(("response", keys.response[i]))
            hit = next((kind for kind, key in checks if key in seen[kind]), None)
            for kind, key in checks:
                seen[kind].setdefault(key, i)
            if hit:
                kinds[hit] += 1
                rows.append(ctx.records[i])
    if not rows:
        return None
    names = {"pair": "repeat a whole row", "prompt": "repeat only the prompt (with another answer)",
             "response": "repeat only the response"}
    detail = ", ".join(f"{n} {names[k]}" for k, n in kinds.most_common())
    return Finding.for_rows(
        "exact_duplicate", "warning", rows,
        f"{len(rows)} row(s) duplicate an earlier row of their split ({detail}): repeated rows are "
        "over-weighted, and one prompt with different answers is label noise.",
        "Drop the repeats; for prompts with different answers keep the correct one.",
    )


@register("near_duplicate")
def near_duplicate(ctx: AuditContext) -> Finding | None:
    """Rows nearly identical (MinHash LSH, Jaccard >= audit.near_duplicate_threshold) to an earlier
    row of the same split, exact duplicates of the whole row excepted."""
    split = ctx.split
    flagged: dict[int, tuple[int, float]] = {}
    for i, j, sim in near_pairs(ctx):
        if split[i] == split[j] and _keys(ctx, i)[2] != _keys(ctx, j)[2] and j not in flagged:
            flagged[j] = (i, sim)
    ctx.stats["near_duplicate_threshold"] = threshold(ctx)
    if not flagged:
        return None
    rows = sorted(flagged)
    first = rows[0]
    partner, sim = flagged[first]
    return Finding.for_rows(
        "near_duplicate", "warning", ctx.rows(rows),
        f"{len(rows)} row(s) are near-duplicates of an earlier row of their split (Jaccard >= "
        f"{threshold(ctx)}; e.g. {location(ctx.records[first])} ~ {location(ctx.records[partner])}, {sim:.2f}).",
        "Drop or rewrite the near-copies (raise audit.near_duplicate_threshold if they are distinct enough).",
    )


def _exact_cross(ctx: AuditContext) -> dict[int, int]:
    """Eval/test rows whose prompt (or whole row) appeared in an earlier split -> that row."""
    first: dict[bytes, int] = {}
    out: dict[int, int] = {}
    row = _row_keys(ctx)
    for split in SPLITS:
        for i in ctx.indices(split):
            keys = [row.pair[i]] + ([row.prompt[i]] if row.prompt[i] and row.kind[i] != "preference" else [])
            hit = next((first[k] for k in keys if k in first and ctx.split[first[k]] != split), None)
            if hit is not None:
                out[i] = hit
            for k in keys:
                first.setdefault(k, i)
    return out


@register("split_contamination")
def split_contamination(ctx: AuditContext) -> Finding | None:
    """Eval/test rows that also stand (exactly, by prompt, or nearly) in train (or eval)."""
    if len(ctx.present_splits()) < 2:
        return None
    exact = _exact_cross(ctx)
    near = {j: i for i, j, _ in with_copies(near_pairs(ctx)) if ctx.split[i] != ctx.split[j] and j not in exact}
    if not exact and not near:
        return None
    rows = sorted({**near, **exact})
    j = rows[0]
    i = exact.get(j, near.get(j, j))
    counts = Counter(ctx.split[k] for k in rows)
    where = ", ".join(f"{n} {s}" for s, n in counts.items())
    return Finding.for_rows(
        "split_contamination", "error" if exact else "warning", ctx.rows(rows),
        f"{len(rows)} held-out row(s) ({where}) also appear in an earlier split ({len(exact)} exactly or by "
        f"prompt, {len(near)} nearly; e.g. {location(ctx.records[j])} = {location(ctx.records[i])}): "
        "evaluation scores will be inflated.",
        "Remove these rows from eval/test (or from train), then re-split by prompt, not by row.",
    )
