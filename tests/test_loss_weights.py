"""Fractional per-message loss_weight: carried from the data to the loss (tokenize, pack, collate, train)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from test_train import losses, make_config
from test_train_fast import base, load, rows  # noqa: F401 (the module-scoped tiny base fixture)
from tunesmith.tokenize import Collator
from tunesmith.tokenize.pack import pack
from tunesmith.train import lmloss


def _write(path: Path, weight: float | None, n: int = 24) -> Path:
    out = []
    for i in range(n):
        answer = {"role": "assistant", "content": f"The answer is {i % 7 + i % 5}."}
        if weight is not None:
            answer["loss_weight"] = weight
        out.append({"messages": [{"role": "user", "content": f"What is {i % 7} plus {i % 5}?"}, answer]})
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    return path


def test_tokenized_rows_carry_the_weight_of_each_trained_message(base, tmp_path):  # noqa: F811
    from transformers import AutoTokenizer

    from tunesmith.data import ingest
    from tunesmith.tokenize.rows import tokenize_chat_split

    rows_file = tmp_path / "w.jsonl"
    convo = [{"role": "user", "content": "one"}, {"role": "assistant", "content": "first", "loss_weight": 0.5},
             {"role": "user", "content": "two"}, {"role": "assistant", "content": "second"}]
    plain = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    rows_file.write_text(json.dumps({"messages": convo}) + "\n" + json.dumps({"messages": plain}) + "\n")
    config = make_config(base, tmp_path, data=rows_file)
    records = ingest(list(config.datasets)).records
    split = tokenize_chat_split(records, AutoTokenizer.from_pretrained(base), config)
    first, second = split.rows
    trained = [k for k, x in enumerate(first["labels"]) if x != -100]
    values = [first["loss_weights"][k] for k in trained]
    assert set(values) == {0.5, 1.0} and values == sorted(values)  # the 0.5 turn comes first
    assert all(first["loss_weights"][k] == 0.0 for k, x in enumerate(first["labels"]) if x == -100)
    # a row without fractional weights gets 1.0 on its trained tokens (one layout per split)
    assert second["loss_weights"] == [0.0 if x == -100 else 1.0 for x in second["labels"]]
    unweighted = tokenize_chat_split(records[1:], AutoTokenizer.from_pretrained(base), config)
    assert "loss_weights" not in unweighted.rows[0]


def test_weighted_loss_equals_the_model_loss_at_weight_one_and_scales(base):  # noqa: F811
    model = load(base)
    batch_rows = rows()
    for row in batch_rows:
        row["loss_weights"] = [0.0 if x == -100 else 1.0 for x in row["labels"]]
    batch = Collator(0)(batch_rows)
    expected = model(**{k: v for k, v in batch.items() if k != "loss_weights"}).loss
    got, _ = lmloss.weighted_loss(model, batch)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    got, _ = lmloss.weighted_loss(model, {**batch, "loss_weights": batch["loss_weights"] * 0.25})
    torch.testing.assert_close(got, expected * 0.25, atol=1e-6, rtol=1e-5)
    # weight only the first row: its tokens' share of the plain loss, halved
    only_first = batch["loss_weights"].clone()
    only_first[1:] = 0
    first_alone, _ = lmloss.weighted_loss(model, {**batch, "loss_weights": only_first})
    half, _ = lmloss.weighted_loss(model, {**batch, "loss_weights": only_first * 0.5})
    torch.testing.assert_close(half, first_alone * 0.5, atol=1e-6, rtol=1e-5)
    assert 0 < float(first_alone) < float(expected) * 1.5


def test_packing_and_padding_free_batches_keep_weights_aligned_with_labels():
    batch_rows = rows()
    for k, row in enumerate(batch_rows):
        row["loss_weights"] = [0.0 if x == -100 else 0.5 + k for x in row["labels"]]
    packed = pack(batch_rows, [[0, 1, 2]])[0]
    assert len(packed["loss_weights"]) == len(packed["labels"])
    assert all((w == 0.0) == (x == -100) for w, x in zip(packed["loss_weights"], packed["labels"]))
    flat = Collator(0, padding_free=True)(batch_rows)
    assert flat["loss_weights"].shape == flat["labels"].shape
    assert torch.equal(flat["loss_weights"] == 0, flat["labels"] == -100)
    assert sorted(set(flat["loss_weights"][0].tolist())) == [0.0, 0.5, 1.5, 2.5]


def test_training_applies_fractional_weights_on_the_fused_and_the_plain_path(base, tmp_path):  # noqa: F811
    from tunesmith.train import run

    plain = run(make_config(base, tmp_path / "a", data=_write(tmp_path / "a.jsonl", None), max_steps=2), quiet=True)
    half = run(make_config(base, tmp_path / "b", data=_write(tmp_path / "b.jsonl", 0.5), max_steps=2), quiet=True)
    slow = run(make_config(base, tmp_path / "c", data=_write(tmp_path / "c.jsonl", 0.5), max_steps=2,
                           fused_loss=False), quiet=True)
    # step 1 runs the same weights on the same batch (LoRA B = 0, same seed): half the loss, on either path
    assert losses(half.output_dir)[0] == pytest.approx(0.5 * losses(plain.output_dir)[0], rel=1e-4)
    assert losses(slow.output_dir)[0] == pytest.approx(losses(half.output_dir)[0], rel=1e-4)
    assert losses(slow.output_dir)[1] == pytest.approx(losses(half.output_dir)[1], rel=1e-3)  # same update
    record = json.loads((half.output_dir / "run.json").read_text())
    assert record["optimisations"]["fused_loss"] is True
    assert json.loads((slow.output_dir / "run.json").read_text())["optimisations"]["fused_loss"] is False
