"""Prompt tuning with fractional per-message loss_weight: the weighted loss skips the virtual-token positions
PEFT puts in front of the sequence (it crashed: "Expected input batch_size (312) to match target batch_size (232)")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from test_loss_weights import _write
from test_train import losses, make_config
from test_train_fast import base, load, rows  # noqa: F401 (the module-scoped tiny base fixture)
from tunesmith.tokenize import Collator
from tunesmith.train import lmloss

VIRTUAL = 5


def _prompt_model(base: Path):  # noqa: F811
    from peft import PromptTuningConfig, TaskType, get_peft_model

    torch.manual_seed(0)
    return get_peft_model(load(base), PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=VIRTUAL))


def test_weighted_loss_of_a_prompt_tuned_model_is_the_token_weighted_ce(base):  # noqa: F811
    model = _prompt_model(base)
    batch_rows = rows()
    for k, row in enumerate(batch_rows):
        row["loss_weights"] = [0.0 if x == -100 else 0.25 * (k + 1) for x in row["labels"]]
    batch = Collator(0)(batch_rows)
    plain = {k: v for k, v in batch.items() if k != "loss_weights"}
    # expected by hand: the logits at the real positions (after the virtual tokens) against the next label
    logits = model(**{k: v for k, v in plain.items() if k != "labels"}).logits[:, VIRTUAL:].float()
    assert logits.shape[1] == batch["labels"].shape[1]
    targets, weights = batch["labels"][:, 1:], batch["loss_weights"][:, 1:]
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                           ignore_index=-100, reduction="none")
    expected = (ce * weights.reshape(-1)).sum() / (targets != -100).sum()
    got, outputs = lmloss.weighted_loss(model, batch)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert outputs.logits.shape[1] == batch["labels"].shape[1] + VIRTUAL
    # every weight 1: PEFT's own loss (which pads the labels for the virtual tokens itself)
    ones = (batch["labels"] != -100).float()
    got, _ = lmloss.weighted_loss(model, {**batch, "loss_weights": ones})
    torch.testing.assert_close(got, model(**plain).loss, atol=1e-6, rtol=1e-5)


class _Prompt(TrainerCallback):
    """The prompt embedding at the start and the end of training."""

    def on_train_begin(self, args, state, control, model=None, **kw):  # type: ignore[no-untyped-def]
        self.before = self._embedding(model)

    def on_train_end(self, args, state, control, model=None, **kw):  # type: ignore[no-untyped-def]
        self.after = self._embedding(model)

    @staticmethod
    def _embedding(model) -> torch.Tensor:  # type: ignore[no-untyped-def]
        return model.prompt_encoder["default"].embedding.weight.detach().clone()


def test_prompt_tuning_trains_with_fractional_loss_weights(base, tmp_path):  # noqa: F811
    from tunesmith.train import run

    over = dict(adapter="prompt", learning_rate=5e-2, max_steps=3, sample_generations=0)
    plain = run(make_config(base, tmp_path / "a", data=_write(tmp_path / "a.jsonl", None, n=16), **over), quiet=True,
                say=lambda s: None)
    probe = _Prompt()
    half = run(make_config(base, tmp_path / "b", data=_write(tmp_path / "b.jsonl", 0.5, n=16), **over), quiet=True,
               say=lambda s: None, callbacks=[probe])
    assert half.global_step == 3
    # step 1: the same initial prompt (same seed) on the same batch: half the plain loss
    assert losses(half.output_dir)[0] == pytest.approx(0.5 * losses(plain.output_dir)[0], rel=1e-4)
    assert not torch.equal(probe.before, probe.after)  # the virtual tokens learn
