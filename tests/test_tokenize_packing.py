"""Packing: best-fit decreasing bins, per-sample positions, and no attention across samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tiny import build_model, build_tokenizer

from tunesmith.tokenize import Collator
from tunesmith.tokenize.chat import IGNORE
from tunesmith.tokenize.pack import best_fit_decreasing, pack, packing_efficiency, padded_efficiency


def test_best_fit_decreasing_bins() -> None:
    lengths = [7, 5, 4, 3, 3, 2, 1]
    bins = best_fit_decreasing(lengths, 10)
    # 7 -> A(3 left); 5 -> B(5); 4 -> B(1); 3 -> A(0); 3 -> C(7); 2 -> C(5); 1 -> B(0): tightest fit each time
    assert [[lengths[k] for k in b] for b in bins] == [[7, 3], [5, 4, 1], [3, 2]]
    assert all(sum(lengths[k] for k in b) <= 10 for b in bins)
    assert packing_efficiency(lengths, bins, 10) == pytest.approx(25 / 30)
    assert padded_efficiency([2, 4, 1, 1], 2) == pytest.approx(8 / (4 * 2 + 1 * 2))
    with pytest.raises(ValueError, match="more than the bin capacity"):
        best_fit_decreasing([11], 10)


def test_pack_restarts_positions_and_masks_each_first_label() -> None:
    rows = [{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}, {"input_ids": [4, 5], "labels": [IGNORE, 5]}]
    (packed,) = pack(rows, best_fit_decreasing([3, 2], 8))
    assert packed["input_ids"] == [1, 2, 3, 4, 5]
    assert packed["position_ids"] == [0, 1, 2, 0, 1]
    assert packed["labels"] == [IGNORE, 2, 3, IGNORE, 5]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoModelForCausalLM

    path: Path = tmp_path_factory.mktemp("llama")
    tok = build_tokenizer(path, None)
    build_model(path, tok)
    return tok, lambda attn: AutoModelForCausalLM.from_pretrained(str(path), attn_implementation=attn).eval()


SAMPLES = [
    "the quick brown fox jumps over the lazy dog",
    "hello what is the capital of france",
    "paris is the capital",
    "thanks",
    "write a short poem about cats and dogs please",
]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logits_equal_logits_alone(tiny_llama: Any, attn: str) -> None:
    tok, load = tiny_llama
    model = load(attn)
    rows = [{"input_ids": ids, "labels": list(ids)} for ids in tok(SAMPLES, add_special_tokens=False)["input_ids"]]
    packed = pack(rows, best_fit_decreasing([len(r["input_ids"]) for r in rows], 20))
    assert len(packed) >= 2 and len({len(p["input_ids"]) for p in packed}) > 1  # padding inside the batch too
    batch = Collator(tok.pad_token_id, attn_implementation=attn)(packed)
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        alone = {tuple(r["input_ids"]): model(torch.tensor([r["input_ids"]])).logits[0] for r in rows}
    checked = 0
    for b, row in enumerate(packed):
        starts = [k for k, p in enumerate(row["position_ids"]) if p == 0] + [len(row["position_ids"])]
        for start, end in zip(starts, starts[1:]):
            ids = tuple(row["input_ids"][start:end])
            diff = (logits[b, start:end] - alone[ids]).abs().max().item()
            assert diff < 1e-4, f"{attn}: sample {ids} differs by {diff} when packed"
            checked += 1
    assert checked == len(SAMPLES)


def test_without_the_packed_mask_samples_do_leak(tiny_llama: Any) -> None:
    """Negative control: position_ids alone (the model keeps its default cache) let samples attend
    across the boundary, so the equality above really tests the collator's mask."""
    tok, load = tiny_llama
    model = load("sdpa")
    first, second = tok(SAMPLES[:2], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        positions = torch.tensor([list(range(len(first))) + list(range(len(second)))])
        packed = model(torch.tensor([first + second]), position_ids=positions)
        alone = model(torch.tensor([second])).logits[0]
    assert (packed.logits[0, len(first) :] - alone).abs().max().item() > 1e-3
