"""max_steps that amount to many epochs: the epochs lint counts them, and run.json records the epochs trained
(the lint was skipped whenever max_steps > 0, and run.json only had the seed's unused num_epochs: 3)."""

from __future__ import annotations

import json

from test_train import base, make_config, sft_rows, write_jsonl  # noqa: F401 (the tiny base fixture)
from tunesmith.config import config_from_dict
from tunesmith.config.defaults import resolve
from tunesmith.train import lint, run


def _cfg(**over):
    return config_from_dict({"base_model": "tiny", "datasets": ["d.jsonl"], "micro_batch_size": 8, **over})


def _lint(config, rows: int, world: int = 1, epoch_rows: int | None = None) -> list[str]:
    return lint.check(config, resolve(config, rows).values, rows, world=world, epoch_rows=epoch_rows)


def _epochs(found: list[str]) -> list[str]:
    return [w for w in found if "epochs of" in w]


def test_max_steps_of_many_epochs_is_linted():
    [epochs] = _epochs(_lint(_cfg(max_steps=40), rows=16))  # 2 steps an epoch: 20 epochs
    assert epochs.startswith("max_steps: 40 steps are 20 epochs of sft (effective batch 8, 16 training rows): "
                             "more than 5 epochs")
    assert _epochs(_lint(_cfg(max_steps=40), rows=10_000)) == []  # 0.03 epochs
    assert _epochs(_lint(_cfg(max_steps=10), rows=16)) == []  # 5 epochs: at the limit
    assert _epochs(_lint(_cfg(max_steps=40, num_epochs=1), rows=16)) != []  # max_steps decides, not num_epochs
    assert _epochs(_lint(_cfg(max_steps=40, lint_skip=["epochs"]), rows=16)) == []
    assert _epochs(_lint(_cfg(max_steps=40, method="dpo"), rows=16)) == []  # the check is for sft / distill


def test_effective_epochs_count_as_the_trainer_does():
    values = {"num_epochs": 3}
    assert lint.effective_epochs(_cfg(), values, 16) == 3  # no max_steps: the resolved num_epochs
    assert lint.effective_epochs(_cfg(max_steps=40), values, 16, world=1) == 20
    assert lint.effective_epochs(_cfg(max_steps=40), values, 17, world=1) == 40 / 3  # a partial batch is a step
    assert lint.effective_epochs(_cfg(max_steps=40), values, 16, world=2) == 40  # 1 step an epoch per process
    accumulated = _cfg(max_steps=12, micro_batch_size=2, gradient_accumulation_steps=4)
    assert lint.effective_epochs(accumulated, values, 24, world=1) == 4  # 12 batches, 3 steps an epoch
    # packing: an epoch is the packed rows
    [epochs] = _epochs(_lint(_cfg(max_steps=40), rows=400, epoch_rows=16))
    assert "20 epochs" in epochs and "16 training rows" in epochs


def test_run_json_records_the_epochs_max_steps_trained(base, tmp_path):  # noqa: F811
    said: list[str] = []
    data = write_jsonl(tmp_path / "d.jsonl", sft_rows(8))
    cfg = make_config(base, tmp_path, data=data, max_steps=12, micro_batch_size=4, sample_generations=0)
    result = run(cfg, quiet=True, say=said.append)
    record = json.loads((result.output_dir / "run.json").read_text())
    assert record["resolved"]["num_epochs"] == 3  # the seed's value stays recorded, as resolved
    assert record["schedule"]["epochs"] == 6 and record["schedule"]["epochs_trained"] == 6  # 2 steps an epoch
    assert record["schedule"]["total_steps"] == 12
    assert any(w.startswith("max_steps: 12 steps are 6 epochs of sft") for w in record["lint"])
    assert "  max_steps = 12 sets the length: 6 epochs of 8 rows (num_epochs is not used)" in said
    assert f"warning: {record['lint'][-1]}" in said
