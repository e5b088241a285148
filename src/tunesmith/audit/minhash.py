"""Near-duplicate search: word n-gram shingles, MinHash signatures and LSH banding.

The MinHash scheme is datasketch's (``affine32``: MurmurHash3 finalizer, then
``a * h + b mod 2**32`` with datasketch's permutations), computed for all rows at once with
numpy, and the band layout (bands x rows) is the one datasketch's ``MinHashLSH`` picks for the
threshold. Bucketing is a numpy sort per band instead of ``MinHashLSH.insert/query``, which
cost ~100 us per row (10 s per 100,000 rows). Candidate pairs are confirmed with the exact
Jaccard similarity of their shingle sets, so reported pairs are never estimates.

Texts are read in shards of ``SHARD`` rows (issue 20: a million rows never sit in memory as
shingles): a word's id is a hash of the word itself, so a text's shingles are the same whichever
shard it is in; what is kept for all rows is a 64 x 4-byte signature and a 16-byte digest of the
normalised text, and the shingles of the candidate pairs are computed again to confirm them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasketch import MinHash, MinHashLSH

_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], dtype=np.uint64)
_CHUNK = 1 << 14  # shingles per vectorised step (x num_perm x 4 bytes of memory: stays in cache)
_ALL_PAIRS_UP_TO = 16  # larger buckets pair every member with the first only
SHARD = 20_000  # texts shingled at once (~13 KB of transient memory per row of a shard)


@dataclass(frozen=True)
class Shingles:
    """uint32 hashes of the word n-grams of every text, concatenated (row i is
    ``values[offsets[i]:offsets[i+1]]``), and each text in normalised form."""

    values: np.ndarray
    offsets: np.ndarray
    normalised: list[str]

    def of(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]


def shingle(texts: Sequence[str], ngram: int) -> Shingles:
    """Hashes of the word ``ngram``-grams of each Unicode-normalised (NFKC: an accent composed or not, a
    full-width letter, are the same text), lower-cased, punctuation-free text (a text shorter than ``ngram``
    words keeps its words). A word's id is a hash of its text, so the hashes of a text do not depend on the
    other texts."""
    arr = pc.utf8_normalize(pa.array(texts, type=pa.large_string()), form="NFKC")
    clean = pc.replace_substring_regex(pc.utf8_lower(arr), r"[^\p{L}\p{N}\s]+", " ")
    lists = pc.utf8_split_whitespace(pc.utf8_trim_whitespace(clean))
    flat = lists.flatten()
    bounds = np.asarray(lists.offsets, dtype=np.int64)
    lengths = bounds[1:] - bounds[:-1]
    rows = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    keep = np.asarray(pc.not_equal(flat, ""), dtype=bool)
    encoded = pc.dictionary_encode(flat)
    words = np.array([_word_id(w) for w in encoded.dictionary.to_pylist()], dtype=np.uint64)
    ids, rows = words[np.asarray(encoded.indices, dtype=np.int64)][keep], rows[keep]
    normalised = pc.binary_join(lists, pa.scalar(" ", pa.large_string())).to_pylist()
    counts = np.bincount(rows, minlength=len(texts))
    n = len(ids)
    full = np.arange(n) + ngram <= np.cumsum(counts)[rows]
    with np.errstate(over="ignore"):
        h = ids * _MIX[0]
        single = h.copy()
        for k in range(1, ngram):
            nxt = np.zeros(n, dtype=np.uint64)
            nxt[: n - k] = ids[k:] + np.uint64(1)
            h = (h ^ (nxt * _MIX[k % 3])) * _MIX[2]
        h = np.where(full, h, single)
        h ^= h >> np.uint64(29)
    keep = full | (counts[rows] < ngram)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=len(texts)))])
    values = (h[keep] & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return Shingles(values, offsets.astype(np.int64), [s or "" for s in normalised])


def _word_id(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (datasketch's pre-mix for the affine32 scheme)."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint32(16))
        h = h * np.uint32(0x85EBCA6B)
        h = h ^ (h >> np.uint32(13))
        h = h * np.uint32(0xC2B2AE35)
        return h ^ (h >> np.uint32(16))


def signatures(sh: Shingles, rows: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures (len(rows) x num_perm, uint32) of the given non-empty rows; equal to
    ``datasketch.MinHash(num_perm, seed, hashfunc=int)`` updated with each row's shingles."""
    a, b = MinHash(num_perm=num_perm, seed=seed).permutations
    a, b = a[:, None], b[:, None]
    out = np.empty((len(rows), num_perm), dtype=np.uint32)
    sizes = sh.offsets[rows + 1] - sh.offsets[rows]
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    # the shingle positions of the rows, in order: row k's run starts at offsets[rows[k]]
    idx = np.repeat(sh.offsets[rows] - bounds[:-1], sizes) + np.arange(bounds[-1])
    hashed = _fmix32(sh.values[idx])
    buffer = np.empty((num_perm, _CHUNK), dtype=np.uint32)  # reused: no fresh pages per chunk
    i = 0
    while i < len(rows):
        j = max(i + 1, int(np.searchsorted(bounds, bounds[i] + _CHUNK, side="right")) - 1)
        width = int(bounds[j] - bounds[i])
        if width > buffer.shape[1]:  # one row with more shingles than a chunk
            buffer = np.empty((num_perm, width), dtype=np.uint32)
        phv = buffer[:, :width]  # num_perm x shingles: a * h + b, wrapping mod 2**32
        np.multiply(a, hashed[None, bounds[i] : bounds[j]], out=phv)
        np.add(phv, b, out=phv)
        out[i:j] = np.minimum.reduceat(phv, bounds[i:j] - bounds[i], axis=1).T
        i = j
    return out


def _band_pairs(sig: np.ndarray, rows: np.ndarray, bands: int, width: int) -> set[tuple[int, int]]:
    """Pairs (earlier, later) of ``rows`` (indices into ``sig``) that share at least one band."""
    pairs: set[tuple[int, int]] = set()
    for k in range(bands):
        band = np.ascontiguousarray(sig[rows, k * width : (k + 1) * width])
        keys = band.view(np.dtype((np.void, band.dtype.itemsize * width))).ravel()
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        shared = np.flatnonzero(counts[inverse] > 1)
        order = shared[np.argsort(inverse[shared], kind="stable")]
        groups = np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)
        for g in groups:
            g = rows[g]
            if len(g) <= _ALL_PAIRS_UP_TO:
                pairs.update((int(x), int(y)) for n, x in enumerate(g) for y in g[n + 1 :])
            else:
                pairs.update((int(g[0]), int(y)) for y in g[1:])
    return pairs


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sets given as unique arrays."""
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def near_duplicates(
    texts: Sequence[str], threshold: float, *, ngram: int = 2, num_perm: int = 64,
    margin: float = 0.15, seed: int = 1, shard: int = SHARD,
) -> list[tuple[int, int, float]]:
    """Pairs (i, j, jaccard) with i < j whose shingle sets have Jaccard >= ``threshold``.

    Texts equal after normalisation pair with the first of their group only (Jaccard 1.0);
    the first of each group goes through LSH (threshold lowered by ``margin`` for recall).
    ``texts`` is read ``shard`` rows at a time (it may be a sequence kept on disk).
    """
    n = len(texts)
    digests = np.zeros(n, dtype="S16")  # b"" for a text with no word
    sig = np.zeros((n, num_perm), dtype=np.uint32)
    for start in range(0, n, shard):
        sh = shingle(list(texts[start : start + shard]), ngram)
        digests[start : start + len(sh.normalised)] = [_digest(t) for t in sh.normalised]
        some = np.flatnonzero(sh.offsets[1:] > sh.offsets[:-1])
        sig[start + some] = signatures(sh, some, num_perm, seed)
        del sh
    present = np.flatnonzero(digests != b"")
    _, first_at, inverse = np.unique(digests[present], return_index=True, return_inverse=True)
    first = present[first_at][inverse]  # per present row: the first row with its normalised text
    out = [(int(j), int(i), 1.0) for i, j in zip(present, first) if i != j]
    reps = present[first == present]
    if len(reps) < 2:
        return out
    # bands x rows for high recall at `threshold`: datasketch's optimum for a lower threshold,
    # weighing false negatives over false positives (these only cost an exact check)
    lsh = MinHashLSH(threshold=max(0.05, threshold - margin), num_perm=num_perm, weights=(0.3, 0.7))
    candidates = sorted(_band_pairs(sig, reps, lsh.b, lsh.r))
    del sig
    sets = _shingle_sets(texts, sorted({k for pair in candidates for k in pair}), ngram, shard)
    for i, j in candidates:
        sim = jaccard(sets[i], sets[j])
        if sim >= threshold:
            out.append((i, j, sim))
    return sorted(out)


def with_copies(pairs: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    """``near_duplicates``' pairs, plus each copy's own pair with its group's near partners.

    ``near_duplicates`` pairs a copy (a text whose shingles equal another's: Jaccard 1.0) with the
    first of its group only, so a copy of a row that is near another row is not paired with that row.
    A caller that needs every row's partner in another set (an eval row near a training row)
    reads these pairs instead: for each near pair (a, b), every copy of a is paired with b and every
    copy of b with a, at the same similarity."""
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for i, j, sim in pairs:
        if sim >= 1.0 and root(i) != root(j):
            parent[max(root(i), root(j))] = min(root(i), root(j))
    groups: dict[int, list[int]] = {}
    for x in parent:
        groups.setdefault(root(x), []).append(x)
    for r in list(groups):
        groups[r].append(r)
    out = set(pairs)
    for a, b, sim in pairs:
        if sim < 1.0:
            out.update((min(m, b), max(m, b), sim) for m in groups.get(root(a), ()) if m != a)
            out.update((min(a, k), max(a, k), sim) for k in groups.get(root(b), ()) if k != b)
    return sorted(out)


def _digest(normalised: str) -> bytes:
    return hashlib.blake2b(normalised.encode("utf-8", "surrogatepass"), digest_size=16).digest() if normalised else b""


def _shingle_sets(texts: Sequence[str], rows: list[int], ngram: int, shard: int) -> dict[int, np.ndarray]:
    """The unique shingles of the given rows, a shard at a time."""
    out: dict[int, np.ndarray] = {}
    for start in range(0, len(rows), shard):
        part = rows[start : start + shard]
        sh = shingle([texts[k] for k in part], ngram)
        out.update((k, np.unique(sh.of(n))) for n, k in enumerate(part))
    return out
