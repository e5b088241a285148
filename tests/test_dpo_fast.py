"""The fast DPO path is exact: same loss, metrics and gradients as TRL's own DPOTrainer loss."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from tunesmith.errors import ConfigError
from tunesmith.train import dpo, run, speed, varlen
from tunesmith.models.precision import Precision

from test_methods import config, pairs, write_jsonl
from test_train import CHATML
from tiny import build_model, build_tokenizer

FP32 = Precision(False, False, True, "test")
METRICS = ["entropy", "logits/chosen", "logits/rejected", "mean_token_accuracy", "rewards/chosen", "rewards/rejected",
           "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected", "num_tokens"]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dpobase")
    tok = build_tokenizer(root, CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>", pad_token="<|endoftext|>")
    build_model(root, tok)
    return root


def preference_rows() -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    ids = lambda n: torch.randint(5, 500, (n,), generator=gen).tolist()  # noqa: E731
    # lengths vary; the last pair is longer than max_length (24) and is truncated (TRL's keep_start)
    return [{"prompt_ids": ids(p), "chosen_ids": ids(c), "rejected_ids": ids(r)}
            for p, c, r in [(5, 4, 7), (3, 9, 2), (8, 6, 6), (14, 12, 9)]]


def make_model(base: Path, adapter: str, padding_free: bool):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if padding_free:
        model.set_attn_implementation(varlen.register())
    if adapter == "lora":
        torch.manual_seed(0)
        return get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0)), None
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(i)) * 0.02)
    return model, ref


def trainer(cls, model, ref, tokenizer, tmp: Path, loss_type: str, **extra):
    from datasets import Dataset
    from trl import DPOConfig

    args = DPOConfig(output_dir=str(tmp), beta=0.1, loss_type=[loss_type], max_length=24, use_cpu=True, bf16=False,
                     report_to=[],
                     per_device_train_batch_size=4, disable_tqdm=True)
    out = cls(model=model, ref_model=ref, args=args, train_dataset=Dataset.from_list(preference_rows()),
              processing_class=tokenizer, **extra)
    with torch.no_grad():  # the policy's adapter moves away from TRL's frozen "ref" copy of it (B starts at zero)
        for name, p in model.named_parameters():
            if "lora_B.default" in name:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))) * 0.05)
    return out


def loss_metrics_grads(t, model, batch):
    model.train()
    loss = t.compute_loss(model, batch)
    loss.backward()
    metrics = {k: v[-1] for k, v in t._metrics["train"].items()}
    return loss.detach(), metrics, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("adapter,padding_free,loss_type", [("lora", True, "sigmoid"), ("lora", False, "ipo"),
                                                            ("none", True, "hinge")])
def test_fast_dpo_equals_trls_loss_metrics_and_gradients(base, tmp_path, adapter, padding_free, loss_type):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    rows = preference_rows()
    model, ref = make_model(base, adapter, padding_free=False)
    plain = trainer(dpo.PretokenizedDPOTrainer, model, ref, tokenizer, tmp_path / "plain", loss_type)
    expected = loss_metrics_grads(plain, model, plain.data_collator(rows))

    model, ref = make_model(base, adapter, padding_free)
    if ref is not None and padding_free:
        ref.set_attn_implementation(varlen.register())
    collator = dpo.PreferenceCollator(tokenizer.pad_token_id, 24, padding_free)
    fast = trainer(dpo.FastDPOTrainer, model, ref, tokenizer, tmp_path / "fast", loss_type, data_collator=collator)
    fast.chunk = 7  # several chunks
    batch = collator(rows)
    assert ("position_ids" in batch) is padding_free and ("attention_mask" in batch) is not padding_free
    loss, metrics, grads = loss_metrics_grads(fast, model, batch)

    torch.testing.assert_close(loss, expected[0], atol=1e-6, rtol=1e-5)
    assert abs(expected[1]["rewards/margins"]) > 1e-3  # the policy differs from the reference
    for key in METRICS:
        assert metrics[key] == pytest.approx(expected[1][key], rel=1e-4, abs=1e-6), key
    assert sorted(grads) == sorted(expected[2]) and grads
    if adapter == "lora":  # TRL's "ref" copy of the fresh adapter is zero: the reference pass skips the adapter
        assert fast._ref_adapter is False
    if adapter == "none":
        # the trained head (tied to the embedding here): its gradient is recomputed in the backward pass
        assert "model.embed_tokens.weight" in grads
    for name in grads:
        torch.testing.assert_close(grads[name], expected[2][name], atol=1e-6, rtol=1e-4, msg=name)


def test_preference_collator_layout_by_hand():
    rows = [{"prompt_ids": [1, 2], "chosen_ids": [3], "rejected_ids": [4, 5]},
            {"prompt_ids": [6], "chosen_ids": [7, 8], "rejected_ids": [9]}]
    free = dpo.PreferenceCollator(0, None, True)(rows)
    # sequences: [1 2 3] [6 7 8] [1 2 4 5] [6 9]; scored: the positions before each completion token
    assert free["input_ids"].tolist() == [[1, 2, 3, 6, 7, 8, 1, 2, 4, 5, 6, 9]]
    assert free["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 0, 1]]
    assert free["target_positions"].tolist() == [1, 3, 4, 7, 8, 10]
    assert free["target_ids"].tolist() == [3, 7, 8, 4, 5, 9]
    assert free["target_segments"].tolist() == [0, 1, 1, 2, 2, 3]
    assert free["completion_lengths"].tolist() == [1, 2, 2, 1]
    padded = dpo.PreferenceCollator(0, 3, False)(rows)  # max_length 3 cuts [1 2 4 5] to [1 2 4]
    assert padded["input_ids"].tolist() == [[1, 2, 3], [6, 7, 8], [1, 2, 4], [6, 9, 0]]
    assert padded["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 0]]
    assert padded["target_positions"].tolist() == [1, 3, 4, 7, 9]
    assert padded["target_segments"].tolist() == [0, 1, 1, 2, 3]


def test_choose_turns_dpo_speedups_on_and_says_why_not(base, tmp_path):
    from transformers import AutoModelForCausalLM

    data = write_jsonl(tmp_path / "pref.jsonl", pairs(8, 0))
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    chosen = speed.choose(config(base, tmp_path, data, method="dpo"), model, model, FP32)
    assert chosen.padding_free and chosen.fused_loss
    other = speed.choose(config(base, tmp_path, data, method="dpo", loss_type="robust"), model, model, FP32)
    assert not other.fused_loss and "robust is computed by TRL's own path" in other.why["fused_loss"]
    assert not other.padding_free and "need fused_loss" in other.why["padding_free"]
    with pytest.raises(ConfigError, match="padding_free: true is not possible"):
        speed.choose(config(base, tmp_path, data, method="dpo", fused_loss=False, padding_free=True), model, model, FP32)


@pytest.mark.slow
def test_fast_dpo_training_keeps_the_loss_curve(base, tmp_path):
    data = write_jsonl(tmp_path / "pref.jsonl", pairs(24, 1))
    curves, margins = {}, {}
    for on in (False, True):
        out = tmp_path / str(on)
        out.mkdir()
        cfg = config(base, out, data, method="dpo", learning_rate=1e-3, beta=0.5, max_steps=5, padding_free=on,
                     fused_loss=on, val_set_size=4, eval_steps=5, save_steps=5)
        run(cfg, quiet=True, say=lambda s: None)
        rows = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
        curves[on] = [round(r["loss"], 4) for r in rows if "loss" in r] + [round(r["eval_loss"], 4) for r in rows
                                                                           if "eval_loss" in r]
        margins[on] = [round(r["rewards/margins"], 4) for r in rows if "rewards/margins" in r]
        record = json.loads((out / "run" / "run.json").read_text())["optimisations"]
        assert record["padding_free"] is on and record["fused_loss"] is on
    assert len(curves[True]) == 6 and curves[True] == curves[False]  # 5 training losses, 1 evaluation
    assert margins[True] == margins[False] and margins[True][-1] > 0


def test_fast_dpo_runs_under_the_runs_mixed_precision(base, tmp_path):
    """The fast DPO loss calls the decoder directly, past the forward accelerate wraps in autocast:
    with bf16 mixed precision its layers must still compute under autocast."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig

    tokenizer = AutoTokenizer.from_pretrained(base)
    model, ref = make_model(base, "lora", padding_free=False)
    args = DPOConfig(output_dir=str(tmp_path), beta=0.1, max_length=24, use_cpu=True, bf16=True, report_to=[],
                     per_device_train_batch_size=4, disable_tqdm=True, max_steps=1)
    collator = dpo.PreferenceCollator(tokenizer.pad_token_id, 24, False)
    fast = dpo.FastDPOTrainer(model=model, ref_model=ref, args=args, train_dataset=Dataset.from_list(preference_rows()),
                              processing_class=tokenizer, data_collator=collator)
    seen: list[bool] = []
    layer = model.get_base_model().model.layers[1].mlp.down_proj
    layer.register_forward_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    fast.train()
    assert seen and all(seen)
