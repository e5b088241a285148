"""The vLLM hand-off command. vLLM itself is not installable here (its wheels pin CUDA torch), so the
command is checked against vLLM's documented flags: structure, values, and the chat template rendering."""

from __future__ import annotations

import json
import shlex

import pytest

from tunesmith import infer
from tunesmith.data.records import Message
from tunesmith.export import vllm
from tunesmith.errors import TunesmithError

from serve_helpers import SYSTEM, build_adapter, build_served_model

# `vllm serve` flags this builder may emit (vLLM >= 0.8 CLI reference), and whether each takes a value
VLLM_FLAGS = {"--served-model-name": 1, "--host": 1, "--port": 1, "--chat-template": 1, "--generation-config": 1,
              "--enable-prefix-caching": 0, "--enable-lora": 0, "--max-loras": 1, "--max-lora-rank": 1,
              "--lora-modules": "+", "--max-model-len": 1, "--dtype": 1, "--trust-remote-code": 0}


def _parse(cmd):
    assert cmd[:2] == ["vllm", "serve"] and not cmd[2].startswith("--")
    flags, i = {}, 3
    while i < len(cmd):
        flag = cmd[i]
        assert flag in VLLM_FLAGS, flag
        arity = VLLM_FLAGS[flag]
        if arity == "+":
            j = i + 1
            while j < len(cmd) and not cmd[j].startswith("--"):
                j += 1
            flags[flag], i = cmd[i + 1 : j], j
        else:
            flags[flag], i = (cmd[i + 1] if arity else True), i + 1 + arity
    return cmd[2], flags


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm")
    base = build_served_model(root / "base")
    return base, build_adapter(base, root / "run" / "model", seed=1), build_adapter(base, root / "extra", seed=2)


def test_merged_model_is_served_directly(folders):
    base, _, extra = folders
    model, flags = _parse(vllm.command(base, port=9000, served_model_name="qs"))
    assert model == str(base.resolve()) and flags["--served-model-name"] == "qs" and flags["--port"] == "9000"
    assert flags["--generation-config"] == str(base.resolve())  # its eos_token_id list: the same stop ids
    assert flags["--chat-template"].endswith("chat_template.jinja") and flags["--enable-prefix-caching"]
    assert "--enable-lora" not in flags and flags["--host"] == "127.0.0.1"
    gen = json.loads((base / "generation_config.json").read_text())
    loaded = infer.load(base)
    assert sorted(gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]]) == sorted(
        loaded.eos_ids)


def test_adapter_run_is_served_as_base_plus_lora(folders):
    base, run_model, extra = folders
    model, flags = _parse(vllm.command(run_model.parent, {"extra": extra}, served_model_name="run",
                                       max_model_len=512))
    assert model == str(base.resolve())  # the base recorded in tunesmith_model.json
    assert flags["--served-model-name"] == "run-base"
    assert flags["--lora-modules"] == [f"run={run_model.resolve()}", f"extra={extra.resolve()}"]
    assert flags["--enable-lora"] and flags["--max-loras"] == "2" and flags["--max-lora-rank"] == "8"  # r=4 -> 8
    assert flags["--generation-config"] == str(run_model.resolve()) and flags["--max-model-len"] == "512"
    with pytest.raises(TypeError, match="unknown options"):
        vllm.command(base, gpu=True)


def test_max_lora_rank_rounds_up_to_a_value_vllm_accepts(tmp_path):
    for r, expected in ((4, 8), (8, 8), (9, 16), (300, 320)):
        (tmp_path / "adapter_config.json").write_text(json.dumps({"r": r}))
        assert vllm.max_lora_rank([tmp_path]) == expected
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 8, "rank_pattern": {"q_proj": 64}}))
    assert vllm.max_lora_rank([tmp_path]) == 64


def test_the_vllm_template_adds_the_trained_system_prompt(folders, tmp_path):
    base, _, _ = folders
    text = vllm.chat_template(base)
    tok = infer.load(base).tokenizer
    user = [Message("user", 'say "hi"\nplease')]
    rendered = tok.apply_chat_template([m.to_dict() for m in user], chat_template=text, tokenize=False,
                                       add_generation_prompt=True)
    assert tok(rendered, add_special_tokens=False)["input_ids"] == infer.prompt_ids(tok, user, SYSTEM)
    own = [Message("system", "Other."), *user]  # a request's own system prompt wins
    rendered = tok.apply_chat_template([m.to_dict() for m in own], chat_template=text, tokenize=False,
                                       add_generation_prompt=True)
    assert tok(rendered, add_special_tokens=False)["input_ids"] == infer.prompt_ids(tok, own)


def test_cli_prints_the_command_with_the_key_from_the_environment(folders, cli):
    base, _, _ = folders
    result = cli("serve", str(base), "--engine", "vllm", "--print", "--host", "0.0.0.0", "--api-key-env", "TS_KEY")
    assert result.returncode == 1 and "TS_KEY" in result.stderr  # unset key: refused
    import os

    os.environ["TS_KEY"] = "sekrit"
    try:
        result = cli("serve", str(base), "--engine", "vllm", "--print", "--host", "0.0.0.0", "--api-key-env", "TS_KEY")
    finally:
        del os.environ["TS_KEY"]
    assert result.returncode == 0, result.stderr
    words = shlex.split(result.stdout)
    assert "VLLM_API_KEY=$TS_KEY" in words and "sekrit" not in result.stdout
    model, flags = _parse(words[words.index("vllm"):])
    assert flags["--chat-template"].endswith(vllm.SERVE_TEMPLATE) and flags["--host"] == "0.0.0.0"
    assert (base / vllm.SERVE_TEMPLATE).is_file()


@pytest.mark.parametrize("config, what", [
    ({"peft_type": "IA3"}, "a IA3 adapter"),
    ({"peft_type": "PREFIX_TUNING"}, "a PREFIX_TUNING adapter.*serve it with tunesmith serve"),
    ({"peft_type": "LORA", "r": 8, "use_dora": True}, "a DoRA adapter"),
    ({"peft_type": "LORA", "r": 8, "modules_to_save": ["lm_head"]}, "modules_to_save"),
])
def test_an_adapter_vllm_cannot_load_is_refused_before_it_starts(tmp_path, config, what):
    """vLLM loads plain LoRA only ("vLLM only supports modules_to_save being None", no DoRA): the command used
    to pass such an adapter to --lora-modules, and vLLM failed at startup or on the first request."""
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(TunesmithError, match=what if "serve" in what else f"{what}.*merge it first"):
        vllm.max_lora_rank([tmp_path])
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    assert vllm.max_lora_rank([tmp_path]) == 8
