"""The frozen-trunk cache is exact: LoRA on the top layers trains to the same losses and weights from
the cached output of the frozen layers as through the whole model, and it stays off (with its
reason) wherever the trunk is not frozen and deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tunesmith.errors import ConfigError
from tunesmith.models.precision import Precision
from tunesmith.tokenize import Collator
from tunesmith.train import lmloss, run, speed, trunk, varlen

from test_train import CHATML, losses, make_config
from tiny import build_model, build_tokenizer

FP32 = Precision(False, False, True, "test")
MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def tiny_base(root: Path, **extra) -> Path:
    tok = build_tokenizer(root, CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>", pad_token="<|endoftext|>")
    build_model(root, tok, layers=4, **extra)
    return root


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tiny_base(tmp_path_factory.mktemp("trunkbase"))


def lora_model(base: Path, layers: list[int], attn: str = "sdpa", **lora):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    if attn == varlen.NAME:
        varlen.register()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, attn_implementation=attn)
    config = LoraConfig(r=4, target_modules=MODULES, layers_to_transform=layers, lora_dropout=0.0, **lora)
    model = get_peft_model(model, config)
    for name, p in model.named_parameters():  # non-zero B: the adapter changes the output from the start
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    model.train()
    return model


def samples() -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for k, length in enumerate((9, 14, 6, 11)):
        ids = torch.randint(5, 500, (length,), generator=gen).tolist()
        out.append({"input_ids": ids, "labels": [-100] * 3 + ids[3:], "loss_weights": [0.0] * 3 + [1.0 + k] * (length - 3)})
    return out


def packed(rows: list[dict]) -> list[dict]:
    """Two packed rows of two samples each, positions restarting per sample (as tokenize.pack makes them)."""
    out = []
    for a, b in ((rows[0], rows[1]), (rows[2], rows[3])):
        out.append({key: a[key] + b[key] for key in ("input_ids", "labels", "loss_weights")}
                   | {"position_ids": list(range(len(a["input_ids"]))) + list(range(len(b["input_ids"])))})
    return out


def grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("layout", ["padding_free", "packed_4d", "padded_2d"])
def test_cached_trunk_gives_the_fused_loss_and_gradients(base, layout):
    rows = samples()
    attn = varlen.NAME if layout == "padding_free" else "sdpa"
    collate = Collator(0, padding_free=layout == "padding_free")
    batches = [collate(packed(rows))] if layout != "padded_2d" else [collate(rows[:2]), collate(rows[2:])]
    if layout == "packed_4d":
        assert batches[0]["attention_mask"].dim() == 4
    model = lora_model(base, [2, 3], attn)
    expected = []
    for batch in batches:
        loss = lmloss.fused_loss(model, batch, None, chunk=4)
        loss.backward()
        expected.append((loss.detach(), grads(model)))
        model.zero_grad()
    found = trunk.find(model)
    assert trunk.first_trained_layer(model, found) == 2
    cache = trunk.TrunkCache(found, 2, 2**30)
    for reuse in (False, True):  # first computed and kept, then read from the cache
        for batch, (loss_ref, grads_ref) in zip(batches, expected):
            loss = cache.loss(model, batch, None, 4)
            loss.backward()
            torch.testing.assert_close(loss, loss_ref, rtol=1e-6, atol=1e-7)
            got = grads(model)
            assert sorted(got) == sorted(grads_ref) and all("layers.2" in n or "layers.3" in n for n in got)
            for name in got:
                torch.testing.assert_close(got[name], grads_ref[name], rtol=1e-5, atol=1e-7, msg=name)
            model.zero_grad()
    assert cache.counts["steps_computed"] == len(batches) and cache.counts["steps_from_cache"] == len(batches)
    # a padded row's padding is not kept; a packed row's is a segment of its own (kept: it is not told apart)
    kept = {"padding_free": (40, 4), "packed_4d": (46, 5), "padded_2d": (40, 4)}[layout]
    assert sum(len(r["input_ids"]) for r in rows) == 40
    assert (cache.bytes_held, len(cache.store)) == (kept[0] * 64 * 4, kept[1])


@pytest.mark.parametrize("layout", ["padding_free", "packed_4d"])
def test_a_qwen2_decoder_gives_the_fused_loss_too(tmp_path, layout):
    """Qwen2 builds its masks per layer type (trunk_layouts.yaml: layer_types)."""
    tok = build_tokenizer(tmp_path, CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>",
                          pad_token="<|endoftext|>")
    build_model(tmp_path, tok, arch="qwen2", layers=4)
    model = lora_model(tmp_path, [3], varlen.NAME if layout == "padding_free" else "sdpa")
    batch = Collator(0, padding_free=layout == "padding_free")(packed(samples()))
    expected = lmloss.fused_loss(model, batch, None, 1024)
    found = trunk.find(model)
    assert found.mask == "layer_types"
    cache = trunk.TrunkCache(found, 3, 2**30)
    first, second = cache.loss(model, batch, None, 1024), cache.loss(model, batch, None, 1024)
    assert cache.counts["steps_from_cache"] == 1
    torch.testing.assert_close(first, expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(second, expected, rtol=1e-6, atol=1e-7)


def test_a_decoder_without_a_layout_is_refused_by_name():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100))
    assert trunk.find(gpt2) == "model_type 'gpt2' has no trunk layout (supported: llama, mistral, qwen2)"


def test_samples_are_found_in_any_batch_layout(base):
    """A sample kept from one packed row is reused when the next epoch packs it with other samples."""
    rows = samples()
    model = lora_model(base, [3], varlen.NAME)
    collate = Collator(0, padding_free=True)
    cache = trunk.TrunkCache(trunk.find(model), 3, 2**30)
    cache.loss(model, collate(packed(rows)), None, 1024)
    shuffled = collate([rows[3], rows[0], rows[2]])
    assert trunk.segments(shuffled["input_ids"], shuffled["position_ids"], None) == [(0, 0, 11), (0, 11, 20), (0, 20, 26)]
    got = cache.loss(model, shuffled, None, 1024)
    assert cache.counts["steps_from_cache"] == 1
    torch.testing.assert_close(got, lmloss.fused_loss(model, shuffled, None, 1024), rtol=1e-6, atol=1e-7)


def test_it_refuses_a_trunk_that_trains_or_is_random(base, tmp_path):
    lora = make_config(base, tmp_path, lora_target_modules=MODULES, peft_layers_to_transform=[2, 3])
    on = speed.Speedups(fused_loss=True)
    chosen = trunk.choose(lora, lora_model(base, [2, 3]), on, tokens=1000, passes=3)
    assert chosen.enabled and chosen.layer == 2 and chosen.layers == 4 and chosen.estimate_bytes == 1000 * 64 * 4
    layer0 = trunk.choose(lora, lora_model(base, [0, 3]), on, tokens=1000, passes=3)
    assert not layer0.enabled and "layer 0 trains" in layer0.why
    embedding = trunk.choose(lora, lora_model(base, [2, 3], modules_to_save=["embed_tokens"]), on, 1000, 3)
    assert not embedding.enabled and "input embedding trains" in embedding.why
    random_base = tiny_base(tmp_path / "dropout", attention_dropout=0.1)
    dropout = trunk.choose(lora, lora_model(random_base, [2, 3]), on, tokens=1000, passes=3)
    assert not dropout.enabled and "attention_dropout is 0.1" in dropout.why
    once = trunk.choose(lora, lora_model(base, [2, 3]), on, tokens=1000, passes=1)
    assert not once.enabled and "seen once" in once.why
    small = make_config(base, tmp_path, lora_target_modules=MODULES, peft_layers_to_transform=[2, 3], trunk_cache_max_mb=1)
    over = trunk.choose(small, lora_model(base, [2, 3]), on, tokens=10_000, passes=3)
    assert not over.enabled and "over trunk_cache_max_mb (1)" in over.why
    assert "fused_loss" in trunk.choose(lora, lora_model(base, [2, 3]), speed.Speedups(), 1000, 3).why
    forced = make_config(base, tmp_path, lora_target_modules=MODULES, peft_layers_to_transform=[2, 3], trunk_cache=True)
    with pytest.raises(ConfigError, match="trunk_cache: true is not possible for this run: the model config's attention_dropout"):
        trunk.choose(forced, lora_model(random_base, [2, 3]), on, tokens=1000, passes=3)
    with pytest.raises(ConfigError, match="trunk_cac"):
        make_config(base, tmp_path, trunk_cahce=True)


def adapter_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model" / "adapter_model.safetensors"))


@pytest.mark.parametrize("padding_free", [True, False])
def test_training_with_the_cache_equals_training_without(base, tmp_path, padding_free):
    curves, weights, records = {}, {}, {}
    for setting in (False, True):
        out = tmp_path / str(setting)
        out.mkdir()
        # padded: with a validation loss every 3 steps (it takes the cached path too)
        evals = {"val_set_size": 0} if padding_free else {"val_set_size": 4, "eval_steps": 3, "save_steps": 3}
        cfg = make_config(base, out, lora_r=4, lora_target_modules=MODULES, peft_layers_to_transform=[2, 3],
                          sample_packing=True, padding_free=padding_free, trunk_cache=setting, max_steps=6,
                          micro_batch_size=4, **evals)
        run(cfg, quiet=True, say=lambda s: None)
        curves[setting] = losses(out / "run")
        records_ = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
        curves[setting] += [r["eval_loss"] for r in records_ if "eval_loss" in r]
        weights[setting] = adapter_weights(out / "run")
        records[setting] = json.loads((out / "run" / "run.json").read_text())["trunk_cache"]
    assert records[False] == {**records[False], "enabled": False, "why": "trunk_cache: false in config"}
    held = records[True]
    assert held["enabled"] and held["layer"] == 2 and held["bytes_held"] > 0
    assert held["steps_from_cache"] > 0 and held["steps_computed"] + held["steps_from_cache"] >= 6
    assert len(curves[True]) == len(curves[False]) == (6 if padding_free else 8)  # + 2 validation losses
    for a, b in zip(curves[True], curves[False]):
        assert a == pytest.approx(b, rel=1e-6)
    assert sorted(weights[True]) == sorted(weights[False]) and weights[True]
    for name in weights[True]:
        torch.testing.assert_close(weights[True][name], weights[False][name], rtol=1e-5, atol=1e-6, msg=name)


def test_run_records_why_the_cache_stayed_off(tmp_path):
    random_base = tiny_base(tmp_path / "base", attention_dropout=0.1)
    cfg = make_config(random_base, tmp_path, lora_r=4, lora_target_modules=MODULES, peft_layers_to_transform=[2, 3],
                      max_steps=2)
    run(cfg, quiet=True, say=lambda s: None)
    record = json.loads((tmp_path / "run" / "run.json").read_text())["trunk_cache"]
    assert not record["enabled"] and "attention_dropout is 0.1" in record["why"]
