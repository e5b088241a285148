"""Config: schema, aliases, overrides, and error messages that name the YAML path and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.config import config_from_dict, load_config
from tunesmith.errors import ConfigError

from conftest import run_cli

BASE = {"base_model": "m", "datasets": [{"path": "d.jsonl"}]}


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_and_frozen():
    cfg = config_from_dict(BASE)
    assert cfg.method == "sft" and cfg.adapter == "lora" and cfg.sequence_len == 2048
    assert cfg.datasets[0].type == "auto"
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="frozen"):
        cfg.seed = 3  # type: ignore[misc]


def test_llamafactory_and_trl_aliases_map_to_canonical_keys():
    cfg = config_from_dict({
        "model_name_or_path": "m", "stage": "pt", "finetuning_type": "full", "lora_rank": 8,
        "cutoff_len": 512, "template": "chatml", "train_on_prompt": True,
        "per_device_train_batch_size": 4, "num_train_epochs": 2, "lora_target": "q_proj,v_proj",
        "datasets": ["a.jsonl"],
    })
    assert (cfg.base_model, cfg.method, cfg.adapter, cfg.lora_r) == ("m", "cpt", "none", 8)
    assert (cfg.sequence_len, cfg.chat_template, cfg.train_on_inputs) == (512, "chatml", True)
    assert (cfg.micro_batch_size, cfg.num_epochs) == (4, 2)
    assert cfg.lora_target_modules == ["q_proj", "v_proj"]
    assert config_from_dict({**BASE, "max_length": 99}).sequence_len == 99
    assert config_from_dict({**BASE, "lora_target": "all"}).lora_target_modules == "all-linear"
    # one module name alone, as LLaMA-Factory accepts it: a list of one (was refused: 'must be a list')
    assert config_from_dict({**BASE, "lora_target": "q_proj"}).lora_target_modules == ["q_proj"]
    assert config_from_dict({**BASE, "additional_target": "embed_tokens"}).modules_to_save == ["embed_tokens"]


def test_same_value_under_two_names_is_an_error():
    with pytest.raises(ConfigError, match=r"sequence_len: set twice, as 'sequence_len' and 'cutoff_len'"):
        config_from_dict({**BASE, "sequence_len": 1, "cutoff_len": 2})


def test_errors_name_file_line_path_and_value(tmp_path):
    p = write(tmp_path, "base_model: m\ndatasets:\n  - path: x.jsonl\n    tpye: chat\nlora_rank: -1\nadapter: lorra\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert f"{p}:4: datasets[0].tpye: unknown key (did you mean 'type'?)" in msg
    assert f"{p}:5: lora_rank: must be > 0 (got -1)" in msg
    assert "adapter: must be one of lora, dora, qlora, prompt, prefix, ia3, none (got 'lorra') (did you mean 'lora'?)" in msg


def test_unknown_top_level_key_suggests(tmp_path):
    p = write(tmp_path, "base_model: m\ndatasets: [x.jsonl]\nlearning_rat: 0.1\n")
    with pytest.raises(ConfigError, match=r":3: learning_rat: unknown key \(did you mean 'learning_rate'\?\)"):
        load_config(p)


def test_missing_required_key(tmp_path):
    with pytest.raises(ConfigError, match=r"base_model: required"):
        load_config(write(tmp_path, "datasets: [x.jsonl]\n"))


def test_set_overrides_dotted_and_typed(tmp_path):
    p = write(tmp_path, "base_model: m\ndatasets:\n  - path: x.jsonl\n")
    cfg = load_config(p, ["lora_r=8", "datasets.0.type=alpaca", "audit.fail_on=never", "lora_rank=4"])
    assert cfg.lora_r == 4 and cfg.datasets[0].type == "alpaca" and cfg.audit.fail_on == "never"
    with pytest.raises(ConfigError, match=r"--set sequence_len: must be > 0 \(got 0\)"):
        load_config(p, ["sequence_len=0"])


def test_llamafactory_dataset_names_use_dataset_info(tmp_path):
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "mine": {"file_name": "mine.json", "formatting": "sharegpt", "ranking": True,
                 "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}},
    }))
    cfg = config_from_dict({"model_name_or_path": "m", "dataset": "mine", "dataset_dir": str(tmp_path)})
    spec = cfg.datasets[0]
    assert spec.path == str(tmp_path / "mine.json") and spec.type == "preference"
    assert spec.field_messages == "conversations" and spec.field_chosen == "chosen"
    with pytest.raises(ConfigError, match="'nope' is not in"):
        config_from_dict({"model_name_or_path": "m", "dataset": "nope", "dataset_dir": str(tmp_path)})


def test_cli_config_prints_resolved_yaml_and_json(tmp_path):
    p = write(tmp_path, "base_model: m\ndatasets: [x.jsonl]\nlora_rank: 8\n")
    out = run_cli("config", str(p), "--set", "seed=7")
    assert out.returncode == 0, out.stderr
    assert "lora_r: 8" in out.stdout and "seed: 7" in out.stdout
    js = run_cli("config", str(p), "--json")
    assert json.loads(js.stdout)["lora_r"] == 8


def test_cli_config_error_has_no_traceback(tmp_path):
    p = write(tmp_path, "base_model: m\ndatasets: [x.jsonl]\nlora_r: 0\n")
    out = run_cli("config", str(p))
    assert out.returncode == 1
    assert "lora_r: must be > 0 (got 0)" in out.stderr and "Traceback" not in out.stderr
    missing = run_cli("config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "config file not found" in missing.stderr
    debug = run_cli("--debug", "config", str(p))
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_cli_help_lists_commands():
    out = run_cli("--help")
    assert out.returncode == 0
    for command in ("config", "data"):
        assert command in out.stdout
