"""Config review as a user coming from Axolotl / LLaMA-Factory: values that were silently converted
or mapped to another meaning, keys wrongly refused, and errors that named the wrong place."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import run_main
from tunesmith.config import load_config
from tunesmith.errors import ConfigError

HEAD = "base_model: m\ndatasets:\n  - path: d.jsonl\n"  # extra keys start on line 4
AX = "base_model: m\nstrict: false\nadapter: lora\ndatasets:\n  - path: d.jsonl\n    type: alpaca\n"
LF = "model_name_or_path: m\nstage: sft\nfinetuning_type: lora\ndatasets: [d.jsonl]\n"


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, overrides: list[str] | None = None):
    return load_config(write(tmp_path, text), overrides)


@pytest.mark.parametrize(("extra", "message"), [
    ("lora_r: true\n", "run.yaml:4: lora_r: must be a number (got true)"),  # was a rank-1 adapter
    ("val_set_size: true\n", "run.yaml:4: val_set_size: must be a number (got true)"),  # was one validation row
    ("num_epochs: yes\n", "run.yaml:4: num_epochs: must be a number (got true)"),
    ("seed: false\n", "run.yaml:4: seed: must be a number (got false)"),
    ("distributed:\n  processes: true\n", "run.yaml:5: distributed.processes: must be a number (got true)"),
])
def test_a_boolean_is_not_read_as_a_number(tmp_path, extra, message):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, HEAD + extra)
    assert str(err.value).endswith(message)


def test_a_boolean_for_a_number_given_with_set_is_refused_and_bool_keys_still_take_booleans(tmp_path):
    with pytest.raises(ConfigError, match=r"--set micro_batch_size: must be a number \(got true\)"):
        load(tmp_path, HEAD, ["micro_batch_size=true"])
    cfg = load(tmp_path, HEAD + "sample_packing: true\nbf16: false\ntf32: yes\n")
    assert (cfg.sample_packing, cfg.bf16, cfg.tf32) == (True, False, True)


@pytest.mark.parametrize("extra", ["num_epochs: .inf\n", "learning_rate: .inf\n", "weight_decay: .inf\n",
                                   "beta: .nan\n"])
def test_infinite_and_nan_numbers_are_refused(tmp_path, extra):
    key = extra.split(":")[0]
    with pytest.raises(ConfigError, match=rf"run.yaml:4: {key}: must be a finite number"):
        load(tmp_path, HEAD + extra)


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_a_seed_transformers_cannot_take_is_a_config_error(tmp_path, seed):
    with pytest.raises(ConfigError, match=r"run.yaml:4: seed: must be "):  # was a crash in train's set_seed
        load(tmp_path, HEAD + f"seed: {seed}\n")
    assert load(tmp_path, HEAD + f"seed: {2**32 - 1}\n").seed == 2**32 - 1


@pytest.mark.parametrize(("text", "tool"), [
    (LF + "fp16: true\n", "LLaMA-Factory"),  # LLaMA-Factory's default bf16: false made it fp32
    (AX + "bf16: false\nfp16: true\n", "Axolotl"),
    (AX + "fp16: true\nbf16: false\n", "Axolotl"),
])
def test_fp16_true_is_mixed_precision_not_fp32(tmp_path, text, tool):
    cfg = load(tmp_path, text)
    assert cfg.bf16 == "auto"  # fp16 with loss scaling where the GPU has no fast bf16
    assert cfg.origin("bf16") == f"from fp16: true ({tool})"


def test_fp16_and_bf16_both_true_stay_an_error(tmp_path):
    with pytest.raises(ConfigError, match="bf16: set twice"):
        load(tmp_path, AX + "bf16: true\nfp16: true\n")


@pytest.mark.parametrize("extra", ["lora_target_linear: true\nlora_target_modules: [q_proj, v_proj]\n",
                                   "lora_target_modules: [q_proj, v_proj]\nlora_target_linear: true\n"])
def test_axolotl_lora_target_linear_adds_every_linear_layer_to_the_listed_modules(tmp_path, extra):
    cfg = load(tmp_path, AX + extra)  # was refused as "set twice"; Axolotl adapts the union
    assert cfg.lora_target_modules == "all-linear"
    assert load(tmp_path, AX + "lora_target_linear: false\nlora_target_modules: [q_proj]\n").lora_target_modules == [
        "q_proj"]


def test_axolotl_excess_length_strategy(tmp_path):
    assert load(tmp_path, AX + "excess_length_strategy: raise\n").truncation == "error"
    assert load(tmp_path, AX + "excess_length_strategy: drop\n").truncation == "drop"
    with pytest.raises(ConfigError, match=r"run.yaml:7: excess_length_strategy: truncate .*never cuts an answer"):
        load(tmp_path, AX + "excess_length_strategy: truncate\n")


def test_a_llamafactory_file_with_trainingarguments_keys_is_read_as_llamafactory(tmp_path):
    extra = ("torch_compile_backend: inductor\ngroup_by_length: false\ndataloader_persistent_workers: false\n"
             "dataloader_prefetch_factor: 1\nlogging_first_step: true\n")
    cfg = load(tmp_path, LF + extra)
    assert cfg.source_tool == "llamafactory"  # was "the keys fit more than one tool" (torch_compile_backend)
    noticed = {n.path for n in cfg.notes if n.kind == "ignored"}
    assert {"torch_compile_backend", "group_by_length", "dataloader_persistent_workers"} <= noticed


@pytest.mark.parametrize("value", ["0.1", "0.25"])
def test_a_share_of_the_total_steps_is_refused_as_such(tmp_path, value):
    with pytest.raises(ConfigError, match=rf"run.yaml:4: eval_steps: must be a number of steps \(or evals_per_epoch\)"
                                          rf"; a share of the total steps .* \(got {value}\)"):
        load(tmp_path, HEAD + f"eval_steps: {value}\n")


@pytest.mark.parametrize(("item", "message"), [
    ("datasets.0.type=alpacaa", "run.yaml: --set datasets[0].type: must be one of"),  # was run.yaml:3 (the file)
    ("learning_rate.x=1", "run.yaml: --set learning_rate: must be a number"),  # was run.yaml:1
    ("datasets.0=3", "run.yaml: --set datasets[0]: must be a mapping"),
    ("=3", "--set =3: expected key=value"),
    ("base_model=", "run.yaml: --set base_model: must not be empty"),
])
def test_set_mistakes_are_reported_as_set_not_as_a_file_line(tmp_path, item, message):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, HEAD, [item])
    assert str(err.value).endswith(message) or message in str(err.value)
    assert not re.search(r"\.yaml:\d", str(err.value))  # no line of the file: the value is not there


def test_a_key_of_the_other_tool_names_that_tool_not_itself(tmp_path):
    path = write(tmp_path, AX + "flash_attention: true\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, tool="llamafactory")
    assert "flash_attention: unknown key (a key of Axolotl (--from axolotl)" in str(err.value)
    assert "did you mean 'flash_attention'" not in str(err.value)


def test_import_to_a_folder_or_a_missing_folder_is_a_user_error(tmp_path):
    path = write(tmp_path, AX)
    for out in (tmp_path, tmp_path / "missing" / "x.yaml"):
        code, _, err = run_main("import", str(path), "--out", str(out))
        assert code == 1 and "cannot write the config" in err and "internal error" not in err
