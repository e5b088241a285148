"""`tunesmith plan` through the real CLI, and `train` refusing a run that would not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_cli
from tiny import build_model, build_tokenizer

CHATML = (ROOT / "src/tunesmith/tokenize/templates/chatml.jinja").read_text()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    tok = build_tokenizer(root, CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>", pad_token="<|endoftext|>")
    build_model(root, tok)
    return root


def _config(tmp: Path, base: Path | str, **over) -> Path:
    data = tmp / "data.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"The answer is {2 * i}."}]} for i in range(30)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    raw = {"base_model": str(base), "datasets": [{"path": str(data)}], "output_dir": str(tmp / "run"),
           "sequence_len": 64, "micro_batch_size": 2, "audit": {"fail_on": "never"}, **over}
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_every_shipped_example_plans_on_an_a100(tmp_path) -> None:
    examples = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").glob("*.yaml"))
    out = run_cli("plan", *examples, "--gpu", "A100-80GB", "--price-per-hour", "2", "--json", cwd=ROOT)
    assert out.returncode == 0, out.stderr
    plans = json.loads(out.stdout)
    assert [p["config"] for p in plans] == examples
    for plan in plans:
        assert plan["memory"]["peak_gib"] > 0 and plan["fits"] is True, plan["config"]
        assert plan["time"]["hours"] > 0 and plan["time"]["cost"] == pytest.approx(plan["time"]["hours"] * 2, rel=1e-3)
    dpo = next(p for p in plans if p["config"].endswith("dpo.yaml"))
    assert "base of the run that writes outputs/sft-lora/model" in dpo["model"]["source"]
    table = run_cli("plan", *examples, "--gpu", "A100-80GB", cwd=ROOT)
    assert table.returncode == 0 and "summary" in table.stdout and "examples/qlora.yaml" in table.stdout


def test_local_model_is_tokenized_and_counts_match_preview(tiny, tmp_path) -> None:
    cfg = _config(tmp_path, tiny)
    plan = json.loads(run_cli("plan", str(cfg), "--gpu", "T4", "--json").stdout)[0]
    preview = run_cli("preview", str(cfg), "--rows", "0")
    assert plan["data"]["source"] == "tokenized"
    assert f"tokens: {plan['data']['tokens']}," in preview.stdout
    assert plan["trainable_params"] > 0 and plan["device"]["name"] == "T4"
    assert any("no bf16" in n for n in plan["notes"])


def test_unknown_gpu_lists_known_ones_with_a_suggestion(tiny, tmp_path) -> None:
    out = run_cli("plan", str(_config(tmp_path, tiny)), "--gpu", "A100-80G8")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "--gpu: unknown GPU 'A100-80G8' (did you mean 'A100-80GB'?); known: H100-SXM" in out.stderr
    assert "RTX-4090" in out.stderr and "MI300X" in out.stderr


def test_price_without_device_is_an_error_naming_the_key(tiny, tmp_path) -> None:
    out = run_cli("plan", str(_config(tmp_path, tiny)), "--price-per-hour", "3")
    assert out.returncode == 1 and "--price-per-hour: a price needs a device" in out.stderr
    bad = _config(tmp_path, tiny, hardware={"price_per_hour": 3})
    out = run_cli("config", str(bad))
    assert out.returncode == 1 and "hardware: price_per_hour: a price needs a device" in out.stderr


def test_hardware_section_validates_gpu_names(tiny, tmp_path) -> None:
    out = run_cli("config", str(_config(tmp_path, tiny, hardware={"gpu": "h100", "gpus": 2, "sharding": "zero3"})))
    assert out.returncode == 0 and "gpu: H100-SXM" in out.stdout
    out = run_cli("config", str(_config(tmp_path, tiny, hardware={"gpu": "RTX-4900"})))
    assert out.returncode == 1 and "did you mean 'RTX-4090'?" in out.stderr and "hardware.gpu" in out.stderr
    out = run_cli("config", str(_config(tmp_path, tiny, hardware={"gpus": 2, "shard": "zero3"})))
    assert out.returncode == 1 and "unknown key (did you mean 'sharding'?)" in out.stderr


def test_bad_model_folders_are_one_line_errors(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = run_cli("plan", str(_config(tmp_path, empty)), "--gpu", "L4")
    assert out.returncode == 1 and "base_model:" in out.stderr and "has no config.json" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    (gpt2 / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 64}))
    out = run_cli("plan", str(_config(tmp_path, gpt2)), "--gpu", "L4")
    assert out.returncode == 1 and "model_type 'gpt2'" in out.stderr and "no known layer shapes" in out.stderr


def test_sharding_table_for_several_gpus(tiny, tmp_path) -> None:
    plan = json.loads(run_cli("plan", str(_config(tmp_path, tiny, adapter="none")), "--gpu", "H100",
                              "--gpus", "4", "--sharding", "zero3", "--json").stdout)[0]
    by = plan["memory"]["per_device_gib_by_sharding"]
    assert set(by) == {"none", "zero1", "zero2", "zero3"} and by["zero3"] <= by["zero2"] <= by["zero1"] <= by["none"]
    assert plan["memory"]["peak_gib"] == by["zero3"] and plan["time"]["devices"] == 4


def test_seven_b_on_24_gb_recommends_qlora(tmp_path) -> None:
    plan = json.loads(run_cli("plan", str(_config(tmp_path, "meta-llama/Llama-2-7b-hf")), "--gpu", "RTX-4090",
                              "--json").stdout)[0]
    rec = plan["recommendation"]
    assert rec["adapter"] == "qlora" and rec["method"] == "sft"
    assert any(r.startswith("< 1,000 rows: LoRA r 8-16, 3-5 epochs") for r in rec["reasons"])
    assert any(r.startswith("6.7B on 24 GB (RTX-4090): QLoRA") for r in rec["reasons"])
    assert rec["hyperparameters"]["learning_rate"]["value"] == 2e-4 and rec["hyperparameters"]["lora_r"]["value"] == 16
    assert plan["fits"] is False and plan["data"]["source"].startswith("estimated: characters / 4")


@pytest.mark.slow
def test_train_refuses_a_run_that_would_not_fit_before_loading_the_model(tiny, tmp_path) -> None:
    big = tmp_path / "big"
    build_tokenizer(big, CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>", pad_token="<|endoftext|>")
    (big / "config.json").write_text(json.dumps({  # Llama-2-70B's shapes, no weights at all
        "model_type": "llama", "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
        "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 32000, "tie_word_embeddings": False}))
    cfg = _config(tmp_path, big, adapter="lora", hardware={"gpu": "T4"})
    out = run_cli("train", str(cfg))
    assert out.returncode == 1, out.stdout
    assert "hardware.gpu: the run would not fit" in out.stderr and "> 15.0 GiB on T4" in out.stderr
    assert "memory estimate:" in out.stdout and "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "config.yaml").exists()  # stopped before the run directory was prepared
    ok = run_cli("train", str(_config(tmp_path, tiny, max_steps=1, hardware={"gpu": "T4"})))
    assert ok.returncode == 0 and "memory estimate:" in ok.stdout and "of 15.0 GiB (T4)" in ok.stdout
