"""Near-duplicate engine: datasketch-equal signatures, exact Jaccard, LSH recall on planted copies."""

from __future__ import annotations

import random

import numpy as np
from datasketch import MinHash

from tunesmith.audit.minhash import jaccard, near_duplicates, shingle, signatures


def test_signatures_equal_datasketch() -> None:
    texts = ["the quick brown fox jumps over the lazy dog", "Ünïcode wörds, and CAPS!", "one", "a b c d e f g"]
    sh = shingle(texts, 2)
    sig = signatures(sh, np.arange(len(texts)), 64, 1)
    for i in range(len(texts)):
        m = MinHash(num_perm=64, seed=1, hashfunc=int)
        m.update_batch(sh.of(i))
        assert (m.hashvalues == sig[i]).all()


def test_shingles_ignore_case_and_punctuation() -> None:
    sh = shingle(["Hello, World! How are you?", "hello world how are you", "", "single"], 2)
    assert np.array_equal(np.unique(sh.of(0)), np.unique(sh.of(1)))
    assert sh.of(0).size == 4 and sh.of(2).size == 0 and sh.of(3).size == 1
    assert sh.normalised[0] == "hello world how are you"


def test_exact_jaccard() -> None:
    a, b = np.array([1, 2, 3, 4], dtype=np.uint32), np.array([3, 4, 5], dtype=np.uint32)
    assert jaccard(a, b) == 2 / 5


def test_recall_on_planted_near_duplicates_and_no_false_pairs() -> None:
    rng = random.Random(0)
    vocab = [f"w{k}" for k in range(3000)]
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(40, 80))) for _ in range(2000)]
    planted = []
    for _ in range(60):
        src = rng.randrange(2000)
        words = texts[src].split()
        words[rng.randrange(len(words))] = "changed"
        texts.append(" ".join(words))
        planted.append((src, len(texts) - 1))
    pairs = near_duplicates(texts, 0.85)
    found = {(i, j) for i, j, _ in pairs}
    assert set(planted) <= found
    assert all(sim >= 0.85 for *_, sim in pairs) and len(found - set(planted)) == 0
