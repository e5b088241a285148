"""The training speed-ups are exact: same loss and gradients as transformers' plain path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tunesmith.errors import ConfigError
from tunesmith.tokenize import Collator
from tunesmith.train import lmloss, run, speed, varlen
from tunesmith.models.precision import Precision

from test_train import CHATML, losses, make_config
from tiny import build_model, build_tokenizer


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fastbase")
    tok = build_tokenizer(root, CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>", pad_token="<|endoftext|>")
    build_model(root, tok)
    return root


def load(base: Path, attn: str = "sdpa"):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, attn_implementation=attn)


def rows(n: int = 3) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for k in range(n):
        length = 9 + 5 * k
        ids = torch.randint(5, 500, (length,), generator=gen).tolist()
        labels = [-100] * (3 + k) + ids[3 + k:]
        out.append({"input_ids": ids, "labels": labels})
    return out


def grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same_grads(a: dict, b: dict, tol: float = 1e-6) -> None:
    assert sorted(a) == sorted(b) and a
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=tol, rtol=1e-4, msg=name)


@pytest.mark.parametrize("trainable", ["one_layer", "all"])
@pytest.mark.parametrize("num_items", [None, 40])
def test_fused_loss_equals_plain_loss_and_gradients(base, trainable, num_items):
    model = load(base)
    if trainable == "one_layer":  # like LoRA: the head is frozen, gradients flow through it
        model.requires_grad_(False)
        model.model.layers[0].mlp.up_proj.weight.requires_grad_(True)
    batch = Collator(0)(rows())
    kwargs = {"num_items_in_batch": torch.tensor(num_items)} if num_items else {}
    plain = model(**batch, **kwargs).loss
    plain.backward()
    expected = grads(model)
    model.zero_grad()
    fused = lmloss.fused_loss(model, batch, kwargs.get("num_items_in_batch"), chunk=5)  # several chunks
    fused.backward()
    torch.testing.assert_close(fused, plain, atol=1e-6, rtol=1e-6)
    assert_same_grads(grads(model), expected)


def test_fused_loss_with_token_weights_equals_the_weighted_plain_loss(base):
    model = load(base)
    model.requires_grad_(False)
    model.model.layers[0].mlp.up_proj.weight.requires_grad_(True)
    batch_rows = rows()
    for k, row in enumerate(batch_rows):  # a different weight per row, 0 on untrained positions
        row["loss_weights"] = [0.0 if x == -100 else (0.5, 3.0, 0.0)[k] for x in row["labels"]]
    batch = Collator(0)(batch_rows)
    plain, _ = lmloss.weighted_loss(model, batch)
    plain.backward()
    expected = grads(model)
    model.zero_grad()
    fused = lmloss.fused_loss(model, batch, None, chunk=5)
    fused.backward()
    torch.testing.assert_close(fused, plain, atol=1e-6, rtol=1e-6)
    assert_same_grads(grads(model), expected)
    unweighted = lmloss.fused_loss(model, {k: v for k, v in batch.items() if k != "loss_weights"}, None, chunk=5)
    assert abs(float(unweighted) - float(fused)) > 1e-3  # the weights changed the loss


@pytest.mark.parametrize("weighted", [False, True])
def test_validation_loss_takes_the_fused_path_and_equals_the_plain_one(base, tmp_path, weighted):
    """The validation loss no longer builds vocabulary-sized logits at every position (the LM head
    module is never called) and equals the plain evaluation's, weighted or not."""
    from datasets import Dataset
    from transformers import TrainingArguments

    batch_rows = rows(5)
    if weighted:
        for k, row in enumerate(batch_rows):
            row["loss_weights"] = [0.0 if x == -100 else (0.5, 3.0, 1.0, 2.0, 1.5)[k] for x in row["labels"]]
    data = Dataset.from_list(batch_rows)
    model = load(base)
    model.requires_grad_(False)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=2, report_to=[],
                             remove_unused_columns=False, use_cpu=True)
    head_calls = []
    model.lm_head.register_forward_hook(lambda *_: head_calls.append(1))
    losses = {}
    for name, cls in (("plain", speed.WeightedLossTrainer), ("fused", speed.FastLossTrainer)):
        head_calls.clear()
        trainer = cls(model=model, args=args, eval_dataset=data, data_collator=Collator(0))
        losses[name] = trainer.evaluate()["eval_loss"]
        assert bool(head_calls) is (name == "plain")
    assert losses["fused"] == pytest.approx(losses["plain"], rel=1e-6)


@pytest.mark.parametrize("mixed", [False, True], ids=["fp32", "bf16"])
def test_the_fused_path_runs_under_the_runs_mixed_precision(base, tmp_path, mixed):
    """The fused loss calls the decoder directly, past the forward accelerate wraps in autocast:
    with bf16 mixed precision its layers must still compute under autocast (training and validation)."""
    from datasets import Dataset
    from transformers import TrainingArguments

    model = load(base)
    model.requires_grad_(False)
    model.model.layers[0].mlp.up_proj.weight.requires_grad_(True)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=2, per_device_eval_batch_size=2,
                             max_steps=1, report_to=[], remove_unused_columns=False, use_cpu=True, bf16=mixed)
    seen: list[bool] = []
    model.model.layers[1].mlp.down_proj.register_forward_hook(
        lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    data = Dataset.from_list(rows(4))
    trainer = speed.FastLossTrainer(model=model, args=args, train_dataset=data, eval_dataset=data,
                                    data_collator=Collator(0))
    trainer.train()
    trainer.evaluate()
    assert seen and set(seen) == {mixed}


def test_fused_loss_targets_are_the_shifted_trained_labels():
    labels = torch.tensor([[-100, -100, 7, 8, -100], [-100, 5, -100, -100, -100]])
    positions, targets = lmloss.shifted_targets(labels)
    assert positions.tolist() == [1, 2, 5] and targets.tolist() == [7, 8, 5]


def test_padding_free_batch_equals_padded_batch(base):
    padded_model, free_model = load(base), load(base)
    free_model.set_attn_implementation(varlen.register())
    samples = rows()
    padded = Collator(0)(samples)
    free = Collator(0, padding_free=True)(samples)
    assert free["input_ids"].shape == (1, sum(len(r["input_ids"]) for r in samples))
    assert "attention_mask" not in free
    assert free["position_ids"][0].tolist()[:10] == list(range(9)) + [0]
    loss_padded = padded_model(**padded).loss
    loss_free = free_model(**free).loss
    loss_padded.backward()
    loss_free.backward()
    torch.testing.assert_close(loss_free, loss_padded, atol=1e-6, rtol=1e-6)
    assert_same_grads(grads(free_model), grads(padded_model), tol=1e-5)


def test_varlen_attention_isolates_samples_and_leaves_generation_alone(base):
    model = load(base)
    model.set_attn_implementation(varlen.register())
    a, b = torch.randint(5, 500, (1, 7)), torch.randint(5, 500, (1, 5))
    row = torch.cat([a, b], 1)
    positions = torch.cat([torch.arange(7), torch.arange(5)])[None]
    with torch.no_grad():
        joint = model(input_ids=row, position_ids=positions).logits
        torch.testing.assert_close(joint[:, :7], model(input_ids=a).logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(joint[:, 7:], model(input_ids=b).logits, atol=1e-5, rtol=1e-5)
        ids = torch.tensor([[0, 0, 5, 6, 7], [5, 6, 7, 8, 9]])
        mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
        ours = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
        plain = load(base).generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
    assert torch.equal(ours, plain)


def test_bf16_frozen_weights_equal_autocast_of_fp32_weights(base):
    from peft import LoraConfig, get_peft_model

    def lora_model():
        torch.manual_seed(0)
        return get_peft_model(load(base), LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0))

    batch = Collator(0)(rows())
    reference, stored = lora_model(), lora_model()
    speed.prepare(stored.get_base_model(), stored, speed.Speedups(bf16_frozen_weights=True))
    assert stored.get_base_model().model.layers[0].mlp.up_proj.base_layer.weight.dtype == torch.bfloat16
    assert stored.get_base_model().model.layers[0].mlp.up_proj.lora_A["default"].weight.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = reference(**batch).loss
        got = stored(**batch).loss
    expected.backward()
    got.backward()
    torch.testing.assert_close(got, expected, atol=0, rtol=0)
    assert_same_grads(grads(stored), grads(reference), tol=0)
    speed.restore(stored, speed.Speedups(bf16_frozen_weights=True))
    assert stored.get_base_model().model.layers[0].mlp.up_proj.base_layer.weight.dtype == torch.float32


def test_choose_reports_why_and_refuses_impossible_requests(base, tmp_path):
    from peft import PromptTuningConfig, get_peft_model

    fp32 = Precision(False, False, True, "test")
    cfg = make_config(base, tmp_path, adapter="prompt")
    plain = load(base)
    prompt = get_peft_model(plain, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    chosen = speed.choose(cfg, plain, prompt, fp32)
    assert not chosen.padding_free and not chosen.fused_loss
    assert "prompt" in chosen.why["padding_free"] and "virtual tokens" in chosen.why["fused_loss"]
    with pytest.raises(ConfigError, match="padding_free: true is not possible"):
        speed.choose(make_config(base, tmp_path, adapter="prompt", padding_free=True), plain, prompt, fp32)
    lora = make_config(base, tmp_path)
    chosen = speed.choose(lora, load(base), load(base), fp32)
    assert chosen.padding_free and chosen.fused_loss and not chosen.bf16_frozen_weights


@pytest.mark.slow
def test_fast_training_keeps_the_loss_curve(base, tmp_path):
    curves = {}
    for on in (False, True):
        (tmp_path / str(on)).mkdir()
        cfg = make_config(base, tmp_path / str(on), padding_free=on, fused_loss=on, max_steps=6)
        result = run(cfg, quiet=True, say=lambda s: None)
        curves[on] = [round(x, 4) for x in losses(tmp_path / str(on) / "run")]
        record = json.loads((tmp_path / str(on) / "run" / "run.json").read_text())["optimisations"]
        assert record["padding_free"] is on and record["fused_loss"] is on
        assert result.global_step == 6
    assert curves[True] == curves[False]


def test_tokenization_reuses_the_audits_encodings(base, tmp_path):
    from tunesmith import data, tokenize
    from tunesmith import audit
    from tunesmith.tokenize import chat

    cfg = make_config(base, tmp_path)
    dataset = data.run(cfg)
    tokenizer = tokenize.load_tokenizer(cfg.base_model, cfg.chat_template)
    plain = tokenize.run(cfg, dataset, tokenizer)
    memo = chat.EncodeMemo()
    audit.run(cfg, data=dataset, tokenizer=tokenizer, memo=memo)
    audited = len(memo._done)
    assert audited == len(dataset.train) + len(dataset.eval) > 0
    cfg2 = make_config(base, tmp_path, output_dir=str(tmp_path / "other"))  # no cache hit
    shared = tokenize.run(cfg2, dataset, tokenizer, memo)
    assert len(memo._done) == audited  # nothing encoded twice
    assert shared.train == plain.train and shared.eval == plain.eval
