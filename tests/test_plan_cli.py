"""`tunesmith plan` through the real CLI, and `train` refusing a run that would not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tunesmith.config import load_config
from tunesmith.errors import ConfigError
from tunesmith.plan import PlanError, PlanOptions, run

from conftest import ROOT, run_cli
from tiny import build_model, build_tokenizer

CHATML = (ROOT / "src/tunesmith/tokenize/templates/chatml.jinja").read_text()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    tok = build_tokenizer(root, CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>", pad_token="<|endoftext|>")
    build_model(root, tok)
    return root


def _config(tmp: Path, base: Path | str, bad_rows: int = 0, **over) -> Path:
    data = tmp / "data.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"The answer is {2 * i}."}]} for i in range(30)]
    rows += [{"messages": [{"role": "asistant", "content": "bad"}]}] * bad_rows
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


def test_table_lists_components_and_a_summary(tiny, tmp_path, capsys) -> None:
    from tunesmith.cli.plan_render import render

    results = [run(load_config(_config(tmp_path, tiny, adapter=a)), PlanOptions(gpu="L4", price_per_hour=1.2),
                   name=f"{a}.yaml") for a in ("lora", "none")]
    render(results)
    text = capsys.readouterr().out
    for word in ("weights", "gradients", "optimizer", "activations", "logits", "peak", "summary", "lora.yaml",
                 "none.yaml", "recommended: sft, lora", "time:", "cost"):
        assert word in text, word


def test_local_model_is_tokenized_and_counts_match_the_tokenize_stage(tiny, tmp_path) -> None:
    from tunesmith import tokenize

    cfg = load_config(_config(tmp_path, tiny))
    plan = run(cfg, PlanOptions(gpu="T4")).as_dict()
    tok = tokenize.run(cfg)
    assert plan["data"]["source"] == "tokenized" and plan["data"]["tokens"] == tok.stats["tokens"]
    assert plan["data"]["longest"] == max(len(r["input_ids"]) for r in tok.train)
    assert plan["trainable_params"] > 0 and plan["device"]["name"] == "T4"
    assert any("no bf16" in n for n in plan["notes"])


def test_unknown_gpu_lists_known_ones_with_a_suggestion(tiny, tmp_path) -> None:
    out = run_cli("plan", str(_config(tmp_path, tiny)), "--gpu", "A100-80G8")
    assert out.returncode == 1 and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "--gpu: unknown GPU 'A100-80G8' (did you mean 'A100-80GB'?); known: H100-SXM" in out.stderr
    assert "RTX-4090" in out.stderr and "MI300X" in out.stderr


def test_price_without_device_is_an_error_naming_the_key(tiny, tmp_path) -> None:
    with pytest.raises(PlanError, match="--price-per-hour: a price needs a device"):
        run(load_config(_config(tmp_path, tiny)), PlanOptions(price_per_hour=3))
    with pytest.raises(ConfigError, match="hardware: price_per_hour: a price needs a device"):
        load_config(_config(tmp_path, tiny, hardware={"price_per_hour": 3}))


def test_hardware_section_validates_gpu_names(tiny, tmp_path) -> None:
    cfg = load_config(_config(tmp_path, tiny, hardware={"gpu": "h100", "gpus": 2, "sharding": "zero3"}))
    assert cfg.hardware.gpu == "H100-SXM" and cfg.hardware.gpus == 2
    with pytest.raises(ConfigError, match=r"hardware.gpu: unknown GPU 'RTX-4900' \(did you mean 'RTX-4090'\?\)"):
        load_config(_config(tmp_path, tiny, hardware={"gpu": "RTX-4900"}))
    with pytest.raises(ConfigError, match=r"unknown key \(did you mean 'sharding'\?\)"):
        load_config(_config(tmp_path, tiny, hardware={"gpus": 2, "shard": "zero3"}))


def test_bad_model_folders_are_one_line_errors(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = run_cli("plan", str(_config(tmp_path, empty)), "--gpu", "L4")
    assert out.returncode == 1 and "base_model:" in out.stderr and "has no config.json" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    (gpt2 / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 64}))
    with pytest.raises(PlanError, match="base_model: model_type 'gpt2' .* has no known layer shapes"):
        run(load_config(_config(tmp_path, gpt2)), PlanOptions(gpu="L4"))


def test_sharding_table_for_several_gpus(tiny, tmp_path) -> None:
    plan = run(load_config(_config(tmp_path, tiny, adapter="none")),
               PlanOptions(gpu="H100", gpus=4, sharding="zero3")).as_dict()
    by = plan["memory"]["per_device_gib_by_sharding"]
    assert set(by) == {"none", "zero1", "zero2", "zero3"} and by["zero3"] <= by["zero2"] <= by["zero1"] <= by["none"]
    assert plan["memory"]["peak_gib"] == by["zero3"] and plan["time"]["devices"] == 4


def test_thirteen_b_on_24_gb_recommends_qlora(tmp_path) -> None:
    # a 7B LoRA fits 24 GB: train keeps its frozen linear weights in bf16 on a bf16 GPU (~12.8 GiB)
    seven = run(load_config(_config(tmp_path, "meta-llama/Llama-2-7b-hf")), PlanOptions(gpu="RTX-4090")).as_dict()
    assert seven["recommendation"]["adapter"] == "lora" and seven["fits"] is True
    plan = run(load_config(_config(tmp_path, "meta-llama/Llama-2-13b-hf")), PlanOptions(gpu="RTX-4090")).as_dict()
    rec = plan["recommendation"]
    assert rec["adapter"] == "qlora" and rec["method"] == "sft"
    assert any(r.startswith("< 1,000 rows: LoRA r 8-16, 3-5 epochs") for r in rec["reasons"])
    assert any(r.startswith("13.0B on 24 GB (RTX-4090): QLoRA") for r in rec["reasons"])
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
    # fits; the check leaves nothing in output_dir that would make train refuse it as another run's
    ok = run_cli("train", str(_config(tmp_path, tiny, bad_rows=1, on_bad_rows="skip", max_steps=1,
                                      hardware={"gpu": "T4"})))
    assert ok.returncode == 0, ok.stderr
    assert "memory estimate:" in ok.stdout and "of 15.0 GiB (T4)" in ok.stdout
    assert len((tmp_path / "run" / "rejected_rows.jsonl").read_text().splitlines()) == 1


def test_check_fit_compares_cpu_runs_with_available_ram_and_honours_memory_check(tiny, tmp_path) -> None:
    from tunesmith.plan import check_fit
    from tunesmith.plan.device import available_ram_gib

    said: list[str] = []
    result = check_fit(load_config(_config(tmp_path, tiny)), said.append)
    assert result is not None and result.device.kind == "cpu" and result.fits is True
    assert result.device.memory_gib == pytest.approx(available_ram_gib(), rel=0.2)
    assert said and said[0].startswith("memory estimate:") and "(cpu)" in said[0]
    assert check_fit(load_config(_config(tmp_path, tiny, hardware={"memory_check": "off"})), said.append) is None
    big = load_config(_config(tmp_path, "meta-llama/Llama-2-70b-hf", adapter="none",
                              hardware={"gpu": "L4", "memory_check": "warn"}))
    said.clear()
    warned = check_fit(big, said.append)
    assert warned is not None and warned.fits is False and said[-1].startswith("warning: hardware.gpu: the run would not fit")
    with pytest.raises(PlanError, match="not even QLoRA with gradient checkpointing fits"):
        check_fit(big.model_copy(update={"hardware": big.hardware.model_copy(update={"memory_check": "error"})}))


def test_the_fitting_alternative_names_the_checkpointing_its_estimate_assumed(tmp_path) -> None:
    """The README's example: a 70B LoRA on one A100 does not fit, QLoRA does, and QLoRA's estimate is with its
    default gradient checkpointing, so the message must say so (it said only "QLoRA would fit")."""
    from tunesmith.plan import check_fit

    big = load_config(_config(tmp_path, "meta-llama/Llama-2-70b-hf", adapter="lora",
                              hardware={"gpu": "A100-80GB", "memory_check": "error"}))
    with pytest.raises(PlanError) as refused:
        check_fit(big)
    message = str(refused.value)
    assert "the run would not fit" in message and "> 80.0 GiB on A100-80GB" in message
    assert "; QLoRA with gradient checkpointing would fit (~" in message, message
