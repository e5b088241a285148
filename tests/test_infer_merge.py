"""Generation renders prompts exactly as training did; batching is exact; the merge check catches drift."""

from __future__ import annotations

import json

import pytest
import torch

from tunesmith import infer
from tunesmith.config import config_from_dict
from tunesmith.data.records import Message
from tunesmith.errors import TunesmithError
from tunesmith.tokenize import encode_chat
from tunesmith.tokenize.chat import IGNORE
from tunesmith.tokenize.tokenizer import template_text

from tiny import build_model, build_tokenizer

IM = ["<|im_start|>", "<|im_end|>"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    tok = build_tokenizer(root, template_text("chatml"), IM, eos_token="<|im_end|>", pad_token="<pad>")
    build_model(root, tok, hidden=64)
    return root


def test_prompt_ids_are_the_training_prefix(tiny):
    tok = infer.load(tiny).tokenizer
    user = [Message("user", "Plan the station please")]
    enc = encode_chat([Message("system", "Be brief."), *user, Message("assistant", "ok then")], tok)
    prompt = infer.prompt_ids(tok, user, system_prompt="Be brief.")
    assert enc.input_ids[: len(prompt)] == prompt
    assert all(label == IGNORE for label in enc.labels[: len(prompt)])
    assert enc.labels[len(prompt)] != IGNORE  # the first generated token is the first trained one


def test_batched_generation_equals_one_at_a_time(tiny):
    loaded = infer.load(tiny)
    convs = [[Message("user", text)] for text in ("hi", "what is the capital of france please", "thanks")]
    kwargs = {"eos_ids": loaded.eos_ids, "max_new_tokens": 6}
    batched = infer.generate(loaded.model, loaded.tokenizer, convs, batch_size=3, **kwargs)
    single = infer.generate(loaded.model, loaded.tokenizer, convs, batch_size=1, **kwargs)
    assert batched == single


def test_resolve_model_dir(tmp_path, tiny):
    (tmp_path / "run").mkdir()
    with pytest.raises(TunesmithError, match="no model found"):
        infer.resolve_model_dir(tmp_path)
    with pytest.raises(TunesmithError, match="no such file"):
        infer.resolve_model_dir(tmp_path / "missing")
    assert infer.resolve_model_dir(tiny) == tiny


def _adapter(tiny, out):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny)),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    model.save_pretrained(out)
    infer.load(tiny).tokenizer.save_pretrained(out)
    return out


def test_merge_matches_adapter_and_fails_loudly_when_it_does_not(tmp_path, tiny):
    from tunesmith import merge
    from tunesmith.merge.run import MergeCheckFailed, raise_if_failed

    adapter = _adapter(tiny, tmp_path / "adapter")
    config = config_from_dict({"base_model": str(tiny), "datasets": [{"path": "x.jsonl"}],
                               "output_dir": str(tmp_path), "system_prompt": "Be brief."})
    probes = [[Message("user", "hi")], [Message("user", "the quick brown fox")]]
    result = merge.run(config, probes, adapter_dir=adapter, out_dir=tmp_path / "merged")
    assert result.passed and 0 <= result.max_abs_diff < 1e-4 and result.prompts == 2
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    assert json.loads((tmp_path / "merged" / "generation_config.json").read_text())["eos_token_id"] is not None
    strict = merge.run(config, probes, adapter_dir=adapter, out_dir=tmp_path / "merged2", tolerance=-1.0)
    with pytest.raises(MergeCheckFailed, match="differs from its adapter"):
        raise_if_failed(strict)
    with pytest.raises(TunesmithError, match="not an adapter"):
        merge.run(config, probes, adapter_dir=tiny)
