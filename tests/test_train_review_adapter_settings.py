"""Adapter settings the chosen adapter does not read are an error naming the key and the adapter (ia3 with
lora_target_modules trained PEFT's default modules, prompt dropped modules_to_save, prefix lora_r / layers)."""

from __future__ import annotations

import pytest
import yaml

from test_train import base, run_cli, sft_rows, write_jsonl  # noqa: F401 (the tiny base fixture)
from tunesmith.config import Config, config_from_dict
from tunesmith.errors import ConfigError
from tunesmith.train import model as train_model
from tunesmith.train import preflight


def _config(adapter: str, **over: object):
    return config_from_dict({"base_model": "m", "datasets": ["d.jsonl"], "adapter": adapter, **over})


@pytest.mark.parametrize("adapter,over,named", [
    ("ia3", {"lora_target_modules": ["q_proj", "o_proj"], "peft_layers_to_transform": [1]},
     "lora_target_modules: adapter ia3 (IA3 (learned scaling vectors)) does not use lora_target_modules (used by "
     "lora/dora/qlora), peft_layers_to_transform (used by lora/dora/qlora): remove them"),
    ("prompt", {"modules_to_save": ["norm"]}, "modules_to_save: adapter prompt (prompt tuning (learned input "
     "embeddings)) does not use modules_to_save (used by lora/dora/qlora/ia3): remove it"),
    ("prefix", {"lora_r": 4, "lora_target_modules": ["q_proj"], "peft_layers_to_transform": [1]},
     "lora_r: adapter prefix (prefix tuning (learned keys and values in every layer)) does not use lora_r"),
    ("prompt", {"lora_alpha": 8}, "lora_alpha: adapter prompt"),
    ("ia3", {"lora_dropout": 0.1}, "lora_dropout: adapter ia3"),
    ("lora", {"num_virtual_tokens": 8}, "num_virtual_tokens: adapter lora (low-rank adapters on the linear layers) "
     "does not use num_virtual_tokens (used by prompt/prefix)"),
    ("none", {"modules_to_save": ["lm_head"]}, "modules_to_save: adapter none (full fine-tuning"),
    ("none", {"lora_target_modules": ["q_proj"]}, "lora_target_modules: adapter none"),
])
def test_a_setting_the_adapter_does_not_use_is_an_error(adapter, over, named):
    with pytest.raises(ConfigError) as info:
        preflight.check_adapter_settings(_config(adapter, **over))
    assert str(info.value).startswith(f"<config>: {named}"), str(info.value)


@pytest.mark.parametrize("adapter,over", [
    ("prompt", {}), ("prefix", {}), ("ia3", {}), ("none", {}),  # seeded defaults (all-linear, 20 virtual tokens)
    ("prompt", {"lora_dropout": 0.0}), ("none", {"lora_dropout": 0}),  # no dropout asks for nothing
    # a saved config.yaml (every key written, with its seeded default) of another adapter
    ("none", {"lora_target_modules": "all-linear", "num_virtual_tokens": 20, "lora_r": None}),
    ("prompt", {"num_virtual_tokens": 8}), ("prefix", {"num_virtual_tokens": 8}),
    ("ia3", {"modules_to_save": ["lm_head"]}),
    ("lora", {"lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.1, "lora_target_modules": ["q_proj"],
              "peft_layers_to_transform": [1], "modules_to_save": ["lm_head"]}),
    ("dora", {"lora_r": 4}), ("qlora", {"lora_target_modules": ["q_proj"]}),
])
def test_settings_the_adapter_uses_and_seeded_defaults_pass(adapter, over):
    preflight.check_adapter_settings(_config(adapter, **over))


def test_the_table_names_config_keys_and_peft_builders():
    table = preflight._adapter_settings()
    assert set(table) <= set(Config.model_fields)
    assert {b for row in table.values() for b in row["used_by"]} <= set(train_model.PEFT_BUILDERS)


def test_train_stops_before_the_weights_with_the_file_and_line(base, tmp_path):  # noqa: F811
    data = write_jsonl(tmp_path / "d.jsonl", sft_rows(8))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"base_model": str(base), "datasets": [{"path": str(data)}], "bf16": False,
                                    "output_dir": str(tmp_path / "run"), "adapter": "ia3",
                                    "lora_target_modules": ["q_proj"]}, sort_keys=False))
    out = run_cli("train", str(path), "--quiet")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"error: {path}:7: lora_target_modules: adapter ia3 " in out.stderr, out.stderr
    assert "parameters:" not in out.stdout + out.stderr and not (tmp_path / "run" / "run.json").exists()
