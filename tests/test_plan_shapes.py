"""Model shapes from config.json and trainable-parameter counts, checked against the real
transformers models and PEFT's own counts on tiny models of every architecture in the table."""

from __future__ import annotations

import json

import pytest

from tunesmith.plan.adapters import AdapterSettings, trainable
from tunesmith.plan.shapes import PlanError, _known_models, model_shape, shape_from_config

TINY = {"vocab_size": 300, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128}
ARCHS = {
    "llama": {"tie_word_embeddings": True},
    "mistral": {"tie_word_embeddings": False},
    "qwen2": {"tie_word_embeddings": True},
    "qwen3": {"tie_word_embeddings": False, "head_dim": 24},
    "gemma": {"head_dim": 16},
    "gemma2": {"head_dim": 16},
    "phi3": {"tie_word_embeddings": False, "pad_token_id": 0},
}


def _model(arch: str):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    raw = {"model_type": arch, **TINY, **ARCHS[arch]}
    config = AutoConfig.for_model(**raw)
    torch.manual_seed(0)
    return raw | {"tie_word_embeddings": config.tie_word_embeddings}, AutoModelForCausalLM.from_config(config)


def _peft_count(model, peft_config) -> int:
    import copy

    from peft import get_peft_model

    peft_model = get_peft_model(copy.deepcopy(model), peft_config)
    return sum(p.numel() for p in peft_model.parameters() if p.requires_grad)


def _settings(adapter: str, r: int = 8, targets="all-linear", save=None) -> AdapterSettings:
    return AdapterSettings(adapter, r, targets, save, 7)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_total_parameters_equal_the_real_model(arch: str) -> None:
    raw, model = _model(arch)
    assert shape_from_config(raw, arch).total_params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", list(ARCHS))
def test_lora_dora_prompt_prefix_counts_equal_peft(arch: str) -> None:
    from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, TaskType

    raw, model = _model(arch)
    shape = shape_from_config(raw, arch)
    lm = TaskType.CAUSAL_LM
    some = ["o_proj", "down_proj"]
    cases = [
        (_settings("lora"), LoraConfig(task_type=lm, r=8, target_modules="all-linear")),
        (_settings("lora", 4, some), LoraConfig(task_type=lm, r=4, target_modules=some)),
        (_settings("dora"), LoraConfig(task_type=lm, r=8, target_modules="all-linear", use_dora=True)),
        (_settings("lora", 8, some, ["lm_head"]), LoraConfig(task_type=lm, r=8, target_modules=some,
                                                             modules_to_save=["lm_head"])),
        (_settings("prompt"), PromptTuningConfig(task_type=lm, num_virtual_tokens=7)),
        (_settings("prefix"), PrefixTuningConfig(task_type=lm, num_virtual_tokens=7)),
    ]
    for settings, peft_config in cases:
        if arch == "gemma2" and settings.adapter == "prefix":
            continue  # gemma2's hybrid cache is not supported by PEFT's prefix tuning
        assert trainable(shape, settings).trainable == _peft_count(model, peft_config), (arch, settings)


@pytest.mark.parametrize("arch", [a for a in ARCHS if a != "phi3"])
def test_ia3_counts_equal_peft(arch: str) -> None:
    from peft import IA3Config, TaskType

    raw, model = _model(arch)
    shape = shape_from_config(raw, arch)
    assert trainable(shape, _settings("ia3")).trainable == _peft_count(model, IA3Config(task_type=TaskType.CAUSAL_LM))


def test_full_fine_tuning_trains_everything() -> None:
    raw, model = _model("llama")
    counts = trainable(shape_from_config(raw, "x"), _settings("none"))
    assert counts.trainable == model.num_parameters() and counts.frozen == 0


def test_ia3_on_an_architecture_without_peft_defaults_is_an_error() -> None:
    raw, _ = _model("phi3")
    with pytest.raises(PlanError, match="adapter: ia3 has no default target modules for model_type 'phi3'"):
        trainable(shape_from_config(raw, "x"), _settings("ia3"))


def test_a_target_module_the_model_lacks_is_an_error_naming_the_key() -> None:
    raw, _ = _model("llama")
    with pytest.raises(PlanError, match="lora_target_modules: 'c_attn' is not a module of llama"):
        trainable(shape_from_config(raw, "x"), _settings("lora", 8, ["c_attn"]))


def test_known_models_match_their_published_parameter_counts() -> None:
    for name, raw in _known_models().items():
        shape = shape_from_config(raw, name)
        assert shape.total_params / 1e9 == pytest.approx(raw["params_b"], rel=0.005), name


def test_unknown_architecture_is_a_one_line_error_naming_base_model(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 64}))
    with pytest.raises(PlanError) as err:
        model_shape(str(tmp_path))
    message = str(err.value)
    assert message.startswith("base_model: model_type 'gpt2'") and "no known layer shapes" in message
    assert "\n" not in message


def test_folder_without_config_and_missing_folder_are_errors(tmp_path) -> None:
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(PlanError, match="base_model: .*: the folder has no config.json"):
        model_shape(str(tmp_path))
    with pytest.raises(PlanError, match="base_model: ./nope/model: no such model folder"):
        model_shape("./nope/model")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(PlanError, match="base_model: .*config.json: not readable JSON"):
        model_shape(str(tmp_path))


def test_missing_field_is_named(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", **TINY, "hidden_size": None}))
    with pytest.raises(PlanError, match="hidden_size is missing or not a positive integer"):
        model_shape(str(tmp_path))


def test_adapter_folder_reads_its_base_and_run_redirects(tmp_path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "llama", **TINY}))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    shape = model_shape(str(adapter))
    assert shape.hidden == 64 and "base of the adapter" in shape.source
    planned = model_shape("outputs/sft/model", {"outputs/sft/model": str(base)})
    assert planned.layers == 3 and "base of the run that writes outputs/sft/model" in planned.source


def test_hub_id_offline_uses_the_cache_or_known_models_or_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert "known_models.yaml" in model_shape("Qwen/Qwen2.5-0.5B-Instruct").source
    snapshot = tmp_path / "models--acme--tiny" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "qwen2", **TINY}))
    assert model_shape("acme/tiny").source.startswith("Hugging Face cache")
    with pytest.raises(PlanError, match="base_model: acme/other: config.json is neither a local folder nor in the"):
        model_shape("acme/other")
