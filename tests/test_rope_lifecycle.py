"""A LoRA run trained with ``rope_scaling`` is used with that scaling by every later stage.

Training loads the base with the configured RoPE scaling, but an adapter folder holds only the adapter:
evaluate, chat, merge and serve loaded its base as the base's own config.json describes it (no scaling),
so every position was rotated differently from training, and serve refused the longer context."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tunesmith.data.records import Message
from tunesmith.models.positions import positions

from test_train import CHATML, make_config
from tiny import build_model, build_tokenizer

PROMPT = [Message("user", " ".join(["the quick brown fox"] * 6))]  # past the base's 32 positions


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    from tunesmith.train import run

    root = tmp_path_factory.mktemp("rope")
    tok = build_tokenizer(root / "base", CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>",
                          pad_token="<|endoftext|>")
    build_model(root / "base", tok, max_positions=32)
    config = make_config(root / "base", root, sequence_len=64, max_steps=3, learning_rate=5e-2,
                         rope_scaling={"type": "linear", "factor": 2})
    run(config, quiet=True, say=lambda *a: None)
    return root / "base", root / "run"


def _logits(model, tokenizer) -> torch.Tensor:
    from tunesmith import infer

    ids = infer.prompt_ids(tokenizer, PROMPT, None)
    assert len(ids) > 32
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1]


def test_the_adapter_loads_on_its_base_with_the_scaling_it_was_trained_with(trained) -> None:
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM

    from tunesmith import infer

    base, run_dir = trained
    info = json.loads((run_dir / "model" / "tunesmith_model.json").read_text())
    assert info["base_config"]["rope_parameters"]["rope_type"] == "linear"
    loaded = infer.load(run_dir)
    assert loaded.model.config.rope_parameters["factor"] == 2.0
    scaled = AutoConfig.from_pretrained(base)
    scaled.rope_parameters = {**scaled.rope_parameters, "rope_type": "linear", "factor": 2.0}
    as_trained = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, config=scaled,
                                                                                dtype=torch.float32), run_dir / "model")
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                                      run_dir / "model")
    got = _logits(loaded.model, loaded.tokenizer)
    torch.testing.assert_close(got, _logits(as_trained.eval(), loaded.tokenizer))
    assert (got - _logits(plain.eval(), loaded.tokenizer)).abs().max() > 1e-3  # what was loaded before


def test_merge_serve_and_vllm_keep_the_scaling(trained, tmp_path) -> None:
    from tunesmith import infer, merge
    from tunesmith.export.vllm import command
    from tunesmith.serve.models import context_length

    base, run_dir = trained
    config = make_config(base, tmp_path, sequence_len=64, rope_scaling={"type": "linear", "factor": 2})
    result = merge.run(config, [PROMPT], adapter_dir=run_dir / "model", out_dir=tmp_path / "merged")
    assert result.passed
    merged = infer.load(tmp_path / "merged")
    assert merged.model.config.rope_parameters["factor"] == 2.0
    assert context_length(None, merged.model.config) == 64  # 32 positions x the linear factor 2
    assert context_length(None, infer.load(run_dir).model.config) == 64
    cmd = command(run_dir)
    overrides = json.loads(cmd[cmd.index("--hf-overrides") + 1])
    assert overrides["rope_parameters"]["factor"] == 2.0


def test_a_runtime_adapter_trained_with_scaling_is_refused_on_a_plain_base(trained) -> None:
    from tunesmith.serve.config import ServeConfig
    from tunesmith.serve.errors import APIError
    from tunesmith.serve.models import Models

    base, run_dir = trained
    models = Models(ServeConfig(model=str(base), port=0, adapter_roots=(run_dir,)))
    with pytest.raises(APIError, match="trained on its base with rope_parameters"):
        models.add("scaled", run_dir / "model")
    assert models.names() == [models.base_name]


@pytest.mark.parametrize("rope, usable", [
    (None, 32),
    ({"rope_type": "linear", "factor": 4.0}, 128),
    ({"rope_type": "dynamic", "factor": 2.0}, 64),
    ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8}, 32),  # the original x factor
    ({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 4}, 32),  # states the extended length already
])
def test_usable_positions_are_read_as_vllm_reads_them(rope, usable) -> None:
    from transformers import LlamaConfig

    config = LlamaConfig(max_position_embeddings=32)
    if rope:
        config.rope_parameters = {"rope_theta": 10000.0, **rope}
    assert positions(config).usable == usable


def test_train_allows_the_context_of_a_base_scaled_by_its_own_config(tmp_path) -> None:
    """A base whose config.json scales RoPE linearly by 2 (e.g. a full fine-tune tunesmith saved) trains at
    twice its stated positions; it was refused at 32 before."""
    from tunesmith.train import context

    tok = build_tokenizer(tmp_path / "base", CHATML, ["<|im_start|>", "<|im_end|>"])
    build_model(tmp_path / "base", tok, max_positions=32)
    raw = json.loads((tmp_path / "base" / "config.json").read_text())
    raw["rope_parameters"] = {"rope_theta": 10000.0, "rope_type": "linear", "factor": 2.0}
    (tmp_path / "base" / "config.json").write_text(json.dumps(raw))
    window = context.check(make_config(tmp_path / "base", tmp_path, sequence_len=64))
    assert (window.scaled_by, window.limit) == ("model", 64)
    from tunesmith.errors import ConfigError

    with pytest.raises(ConfigError, match=r"32 positions x its linear RoPE factor 2 = 64"):
        context.check(make_config(tmp_path / "base", tmp_path, sequence_len=65))
