"""Defects found by reviewing `tunesmith plan`: each test failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tunesmith.config import load_config
from tunesmith.plan import PlanOptions, run
from tunesmith.plan.shapes import shape_from_config
from tunesmith.plan.timing import flops_per_token

from conftest import ROOT
from tiny import build_model, build_tokenizer

CHATML = (ROOT / "src/tunesmith/tokenize/templates/chatml.jinja").read_text()
TINY = {"model_type": "llama", "vocab_size": 300, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": False}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    tok = build_tokenizer(root, CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>", pad_token="<|endoftext|>")
    build_model(root, tok)
    return root


def _config(tmp: Path, base: Path | str, rows: int = 200, **over) -> Path:
    data = tmp / "data.jsonl"
    lines = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                           {"role": "assistant", "content": f"The answer is {2 * i}."}]} for i in range(rows)]
    data.write_text("".join(json.dumps(r) + "\n" for r in lines))
    raw = {"base_model": str(base), "datasets": [{"path": str(data)}], "output_dir": str(tmp / "run"),
           "sequence_len": 256, "micro_batch_size": 2, "audit": {"fail_on": "never"}, **over}
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_max_steps_time_counts_packed_rows_not_samples(tiny, tmp_path) -> None:
    """With sample_packing each step trains micro_batch packed bins of up to sequence_len tokens; the time
    estimate multiplied max_steps by the tokens of one *sample* (slots / samples), ~7x too few here."""
    plan = run(load_config(_config(tmp_path, tiny, sample_packing=True, max_steps=10)), PlanOptions(gpu="A100-80GB"))
    bins = plan.data.batch_rows
    assert 0 < bins < plan.data.rows  # several samples per bin
    assert plan.time.tokens == int(10 * 2 * plan.data.slots / bins)
    assert plan.time.tokens > 10 * 2 * 256 * 0.8  # bins are nearly full


def test_attention_flops_equal_torchs_count_of_the_real_forward() -> None:
    """A counted only q.k^T (2 x layers x q-width x context); attn @ v costs as much again."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(**TINY)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")  # every key of every query
    seq = 128
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randint(0, 300, (1, seq)))
    per_token, _ = flops_per_token(shape_from_config(TINY, "tiny"), seq, full=True, checkpointing=False, dpo=False)
    assert per_token / 3 == counter.get_total_flops() / seq  # full fine-tuning = 3 forward passes


@pytest.mark.parametrize("tied", [True, False])
def test_lora_weights_on_a_bf16_gpu_are_the_bytes_train_keeps(tmp_path, tied) -> None:
    """On a GPU with bf16, train stores LoRA's frozen base linear weights in bf16 (train/speed.py
    bf16_frozen_weights) before the model moves to the device; the plan sized them in fp32 (2x) plus a
    16-bit autocast copy of every one."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunesmith.train import speed

    root = tmp_path / "model"
    tok = build_tokenizer(root, CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>", pad_token="<|endoftext|>")
    build_model(root, tok)
    raw = json.loads((root / "config.json").read_text())
    (root / "config.json").write_text(json.dumps({**raw, "tie_word_embeddings": tied}))  # untied: a head of its own
    plan = run(load_config(_config(tmp_path, root, rows=30)), PlanOptions(gpu="A100-80GB"))
    parts = {c.name: c.bytes for c in plan.memory.components}
    base = AutoModelForCausalLM.from_pretrained(str(root), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, target_modules="all-linear"))
    speed.prepare(base, model, speed.Speedups(bf16_frozen_weights=True))
    frozen = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    assert plan.setup.frozen_bf16 and parts["weights"] == frozen
    head_copy = 0 if not tied else plan.model.vocab * plan.model.hidden * 2  # a tied head stays fp32: autocast casts it
    assert parts["weight_copies"] == head_copy
    assert not any("loads the base in fp32" in n for n in plan.notes)
    t4 = run(load_config(_config(tmp_path, root, rows=30)), PlanOptions(gpu="T4"))  # no bf16: fp32 base, fp16 autocast
    assert not t4.setup.frozen_bf16 and {c.name: c.bytes for c in t4.memory.components}["weights"] == \
        plan.model.total_params * 4


def test_single_gpu_sft_plans_train_s_fused_loss_and_padding_free_batches(tiny, tmp_path) -> None:
    """train's default SFT path (one process) runs the LM head + loss over 1,024-token chunks and packs a micro
    batch into one unpadded row; the plan charged 4 fp32 vocabulary-sized tensors for every token and a
    materialised attention mask, so it refused runs that fit (an 8B LoRA at 4 x 4096 on an A100: 76 GiB with
    gradient checkpointing where train's path needs about 30)."""
    def parts(**over):
        plan = run(load_config(_config(tmp_path, tiny, rows=30, **over)), PlanOptions(gpu="A100-80GB"))
        return plan, {c.name: c.bytes for c in plan.memory.components}

    fast, fast_parts = parts()
    tokens = 2 * fast.setup.seq_len
    vocab, hidden = fast.model.vocab, fast.model.hidden
    assert fast.setup.fused_loss and not fast.setup.mask
    assert fast_parts["logits"] == min(tokens, 1024) * vocab * 6 + tokens * hidden * 4
    plain, plain_parts = parts(fused_loss=False, padding_free=False)
    assert not plain.setup.fused_loss and plain.setup.mask
    assert plain_parts["logits"] == tokens * vocab * 4 * 4
    assert plain_parts["activations"] > fast_parts["activations"]  # the mask's per-layer copy
    two = run(load_config(_config(tmp_path, tiny, rows=30)), PlanOptions(gpu="A100-80GB", gpus=2))
    assert not two.setup.fused_loss  # FastLossTrainer takes the plain path with more than one process


def test_eight_b_lora_with_checkpointing_fits_an_a100_as_train_runs_it(tmp_path) -> None:
    rows = [{"messages": [{"role": "user", "content": f"row {i} " + "word " * 3000},
                          {"role": "assistant", "content": "answer " * 1000}]} for i in range(40)]
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    raw = {"base_model": "meta-llama/Llama-3.1-8B-Instruct", "datasets": [{"path": str(data)}],
           "output_dir": str(tmp_path / "run"), "sequence_len": 4096, "micro_batch_size": 4,
           "gradient_checkpointing": True, "audit": {"fail_on": "never"}, "hardware": {"gpu": "A100-80GB"}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    plan = run(load_config(path))
    assert plan.fits and 25 < plan.memory.peak_bytes / 1024**3 < 40
