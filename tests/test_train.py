"""Training on tiny models: every method x adapter learns, touches only what it should, reloads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tunesmith.config import config_from_dict
from tunesmith.train import run

from conftest import TUNESMITH, run_cli
from tiny import build_model, build_tokenizer

CHATML = (Path(__file__).resolve().parents[1] / "src/tunesmith/tokenize/templates/chatml.jinja").read_text()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("base")
    tok = build_tokenizer(root, CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>", pad_token="<|endoftext|>")
    build_model(root, tok)
    return root


def sft_rows(n: int = 24) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"What is {i % 7} plus {i % 5}?"},
                          {"role": "assistant", "content": f"The answer is {i % 7 + i % 5}."}]} for i in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_config(base: Path, tmp: Path, **over):
    data = over.pop("data", None) or write_jsonl(tmp / "data.jsonl", sft_rows())
    raw = {"base_model": str(base), "datasets": [{"path": str(data)}], "output_dir": str(tmp / "run"),
           "sequence_len": 64, "micro_batch_size": 4, "max_steps": 10, "learning_rate": 5e-3,
           "bf16": False, "seed": 1, "audit": {"fail_on": "never"}, "lora_dropout": 0.0, **over}
    return config_from_dict(raw)


def losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def base_weights(base: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).state_dict().items()}


def logits(model, ids: list[int]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits


@pytest.mark.parametrize("adapter,lr", [("lora", 5e-3), ("dora", 5e-3), ("ia3", 5e-2), ("prompt", 5e-2),
                                        ("prefix", 5e-2), ("none", 2e-3)])
def test_sft_adapter_learns_touches_only_its_params_and_reloads(base, tmp_path, adapter, lr):
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    cfg = make_config(base, tmp_path, adapter=adapter, learning_rate=lr, max_steps=12)
    before = base_weights(base)
    result = run(cfg, quiet=True, say=lambda s: None)
    curve = losses(tmp_path / "run")
    assert result.global_step == 12
    assert min(curve[-3:]) < curve[0] - 0.05, curve
    model = result.model
    if adapter == "none":
        assert result.trainable_params == result.total_params
        changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
        assert changed, "full fine-tuning changed no weight"
        reloaded = AutoModelForCausalLM.from_pretrained(result.model_dir, dtype=torch.float32)
    else:
        assert 0 < result.trainable_params < result.total_params
        base_sd = {k.replace(".base_layer", ""): v for k, v in model.get_base_model().state_dict().items()}
        assert set(before) <= set(base_sd), "some base weights are missing from the adapter model"
        for name, value in before.items():
            assert torch.equal(base_sd[name], value), f"base weight {name} changed"
        reloaded = AutoPeftModelForCausalLM.from_pretrained(result.model_dir, dtype=torch.float32)
    ids = result.tokenizer("What is 3 plus 4?")["input_ids"]
    assert torch.allclose(logits(model, ids), logits(reloaded, ids), atol=1e-5)
    gen = json.loads((result.model_dir / "generation_config.json").read_text())
    assert result.tokenizer.convert_tokens_to_ids("<|im_end|>") in (
        gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]])
    assert (result.model_dir / "chat_template.jinja").read_text() == result.tokenizer.chat_template


def test_lora_trainable_count_matches_rank(base, tmp_path):
    cfg = make_config(base, tmp_path, lora_r=4, lora_target_modules=["q_proj"], max_steps=1)
    result = run(cfg, quiet=True, say=lambda s: None)
    hidden, layers = 64, 2
    assert result.trainable_params == layers * (4 * hidden + 4 * hidden)


def test_lora_on_top_layers_only_trains_those_layers(base, tmp_path):
    from tunesmith.errors import ConfigError

    modules = ["q_proj", "v_proj"]
    cfg = make_config(base, tmp_path, lora_r=4, lora_target_modules=modules, peft_layers_to_transform=[1], max_steps=2)
    result = run(cfg, quiet=True, say=lambda s: None)
    hidden, kv = 64, 64 // 4 * 2  # q: 64 -> 64; v: 64 -> 2 kv heads x 16
    assert result.trainable_params == 4 * (hidden + hidden) + 4 * (hidden + kv)  # one layer, two modules
    names = [n for n, p in result.model.named_parameters() if p.requires_grad]
    assert names and all(".layers.1." in n for n in names)
    # PEFT's name; all-linear cannot be combined; the error names the key as written
    with pytest.raises(ConfigError, match=r"^<config>: layers_to_transform: needs lora_target_modules as a list"):
        make_config(base, tmp_path, layers_to_transform=[1])


def test_cpt_learns(base, tmp_path):
    text = write_jsonl(tmp_path / "text.jsonl", [{"text": "the quick brown fox jumps over the lazy dog " * 6}] * 12)
    cfg = make_config(base, tmp_path, method="cpt", data=text, max_steps=10, learning_rate=1e-2)
    result = run(cfg, quiet=True, say=lambda s: None)
    curve = losses(tmp_path / "run")
    assert result.global_step == 10 and min(curve[-3:]) < curve[0] - 0.3, curve


def test_sft_learns_from_the_packed_rows_memory_mapped_from_the_cache(base, tmp_path):
    """``sample_packing``: the trainer reads the packed rows from their own cache entry (memory-mapped,
    written one packed row at a time), ``position_ids`` restarting per sample."""
    cfg = make_config(base, tmp_path, sample_packing=True, sequence_len=128, micro_batch_size=2, max_steps=10)
    result = run(cfg, quiet=True, say=lambda s: None)
    curve = losses(tmp_path / "run")
    packed = list((tmp_path / "run" / ".cache" / "tokenized").glob("*-packed/train.position_ids.npy"))
    assert result.global_step == 10 and len(packed) == 1 and min(curve[-3:]) < curve[0] - 0.3, curve


def test_qlora_trains_on_nf4_base(base, tmp_path):
    cfg = make_config(base, tmp_path, adapter="qlora", max_steps=12, learning_rate=1e-2)
    result = run(cfg, quiet=True, say=lambda s: None)
    curve = losses(tmp_path / "run")
    assert result.global_step == 12 and min(curve[-3:]) < curve[0] - 0.05, curve  # as strict as the other adapters
    trained = [n for n, p in result.model.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in n for n in trained), trained
    assert "Linear4bit" in type(result.model.get_base_model().model.layers[0].self_attn.q_proj.base_layer).__name__


def test_dpo_raises_reward_margin(base, tmp_path):
    rows = [{"prompt": f"Say yes {i}", "chosen": "Yes indeed.", "rejected": "No way."} for i in range(16)]
    data = write_jsonl(tmp_path / "pref.jsonl", rows)
    cfg = make_config(base, tmp_path, method="dpo", data=data, max_steps=10, learning_rate=5e-3, beta=0.5)
    run(cfg, quiet=True, say=lambda s: None)
    logs = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    margins = [r["rewards/margins"] for r in logs if "rewards/margins" in r]
    assert len(margins) >= 5 and margins[-1] > margins[0] and margins[-1] > 0.1, margins


def _write_yaml(tmp: Path, cfg) -> Path:
    from tunesmith.config.loader import dump_yaml

    p = tmp / "cfg.yaml"
    p.write_text(dump_yaml(cfg))
    return p


def test_kill_and_resume_matches_uninterrupted(base, tmp_path):
    data = write_jsonl(tmp_path / "data.jsonl", sft_rows(64))
    common = dict(data=data, max_steps=40, save_steps=5, micro_batch_size=2, learning_rate=2e-3)
    ref = run(make_config(base, tmp_path / "a", **common), quiet=True, say=lambda s: None)
    cfg_path = _write_yaml(tmp_path, make_config(base, tmp_path / "b", **common))
    run_dir = tmp_path / "b" / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([TUNESMITH, "train", str(cfg_path), "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = run_dir / "checkpoints" / "checkpoint-5" / "tunesmith_complete.json"
    deadline = time.time() + 240
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    out = run_cli("train", str(cfg_path), "--resume", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "resuming from checkpoint-" in out.stdout
    final = json.loads((run_dir / "run.json").read_text())
    assert final["status"] == "completed" and final["global_step"] == 40
    assert abs(losses(run_dir)[-1] - losses(tmp_path / "a" / "run")[-1]) < 1e-3
    assert ref.global_step == 40


@pytest.mark.parametrize("adapter", ["lora", "none"])
def test_watchdog_stops_on_divergence(base, tmp_path, adapter):
    cfg = make_config(base, tmp_path, adapter=adapter, learning_rate=1e6, max_steps=20, max_grad_norm=1e9)
    cfg_path = _write_yaml(tmp_path, cfg)
    out = run_cli("train", str(cfg_path), "--quiet")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "learning rate too high" in out.stderr
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"


def test_refuses_a_foreign_folder_even_with_overwrite(base, tmp_path):
    cfg_path = _write_yaml(tmp_path, make_config(base, tmp_path, max_steps=1))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("someone else's")
    for flags in ((), ("--overwrite",)):
        out = run_cli("train", str(cfg_path), "--quiet", *flags)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert "output_dir is not empty (notes.txt) and is not a tunesmith run directory" in out.stderr
    assert (tmp_path / "run" / "notes.txt").read_text() == "someone else's"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("case", ["too_long", "no_trained_token"])
def test_no_training_row_left_after_tokenization_is_one_sentence(base, tmp_path, case):
    """Every row too long for sequence_len, or none with an assistant token to learn: the run stops before the
    weights load, naming the reason and what to change (the data loader used to fail as an internal error)."""
    rows = sft_rows(8)
    if case == "too_long":
        rows = [{"messages": [{"role": "user", "content": "word " * 80}, r["messages"][1]]} for r in rows]
    else:
        rows = [{"messages": [r["messages"][0], {**r["messages"][1], "loss_weight": 0}]} for r in rows]
    skip = {} if case == "too_long" else {"on_bad_rows": "skip"}  # else each such row is an error by itself
    cfg_path = _write_yaml(tmp_path, make_config(base, tmp_path, data=write_jsonl(tmp_path / "d.jsonl", rows), **skip))
    out = run_cli("train", str(cfg_path), "--quiet")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"error: no training rows left after tokenization: all 8 were left out (8 {case}; first: " \
           f"{tmp_path / 'd.jsonl'}:1: {case}" in out.stderr
    assert ("raise sequence_len" if case == "too_long" else "train_on_turns / loss_weight") in out.stderr
    assert not (tmp_path / "run" / "run.json").exists()  # output_dir not claimed (it holds the tokenize cache)


def test_validation_rows_all_left_out_stop_the_run(base, tmp_path):
    """eval_datasets whose every row is longer than sequence_len: the run trained without evaluation, early stopping
    or the best checkpoint, and said so in one log line."""
    long = [{"messages": [{"role": "user", "content": "word " * 80}, r["messages"][1]]} for r in sft_rows(4)]
    cfg = make_config(base, tmp_path, eval_datasets=[{"path": str(write_jsonl(tmp_path / "eval.jsonl", long))}],
                      eval_steps=1)
    out = run_cli("train", str(_write_yaml(tmp_path, cfg)), "--quiet")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "error: no validation rows left after tokenization: all 4 were left out" in out.stderr
