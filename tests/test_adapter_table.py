"""The adapter table (``config/adapters.yaml``): every ``adapter:`` value has one row, each row's
PEFT builder makes the PEFT config the adapter needs, and the facts other stages read (4-bit base,
gradient checkpointing, full fine-tuning) come from it."""

from __future__ import annotations

import typing

import pytest
import torch

from tunesmith.config import config_from_dict
from tunesmith.config.adapters import adapter_spec, adapters, gradient_checkpointing
from tunesmith.config.defaults import resolve
from tunesmith.config.schema import Adapter
from tunesmith.models.precision import Device
from tunesmith.train import model as train_model


def _config(adapter: str, **extra: object):
    return config_from_dict({"base_model": "m", "datasets": ["d.jsonl"], "adapter": adapter,
                             "lora_target_modules": ["q_proj", "v_proj"], **extra})


def test_every_adapter_value_has_one_row_and_a_builder() -> None:
    assert set(adapters()) == set(typing.get_args(Adapter))
    assert {spec.peft for spec in adapters().values()} <= set(train_model.PEFT_BUILDERS)
    with pytest.raises(ValueError, match=r"adapter: must be one of .* \(did you mean 'lora'\?\)"):
        adapter_spec("lroa")


@pytest.mark.parametrize("adapter,kind,facts", [
    ("lora", "LoraConfig", {"use_dora": False, "r": 16}),
    ("dora", "LoraConfig", {"use_dora": True}),
    ("qlora", "LoraConfig", {"use_dora": False}),
    ("prompt", "PromptTuningConfig", {"num_virtual_tokens": 20}),
    ("prefix", "PrefixTuningConfig", {"num_virtual_tokens": 20}),
    ("ia3", "IA3Config", {}),
    ("none", None, {}),
])
def test_each_adapter_builds_its_peft_config(adapter: str, kind: str | None, facts: dict[str, object]) -> None:
    config = _config(adapter, num_virtual_tokens=20, lora_r=16)
    made = train_model.peft_config(config, resolve(config, 1000))
    if kind is None:
        assert made is None and adapter_spec(adapter).full
        return
    assert type(made).__name__ == kind
    assert {k: getattr(made, k) for k in facts} == facts


def test_the_table_decides_the_base_and_checkpointing() -> None:
    assert train_model.quantization(_config("qlora")) == "4bit"
    assert train_model.quantization(_config("lora")) is None
    assert train_model.quantization(_config("lora", quantization="8bit")) == "8bit"
    assert [a for a, spec in adapters().items() if spec.checkpointing] == ["qlora"]
    assert [a for a, spec in adapters().items() if spec.bf16_frozen_weights] == ["lora"]
    # the one rule train and the planner share: the config's setting, else the adapter's default
    assert gradient_checkpointing(_config("qlora")) and not gradient_checkpointing(_config("lora"))
    assert gradient_checkpointing(_config("lora"), "qlora")  # a planner candidate in place of the config's
    assert not gradient_checkpointing(_config("qlora", gradient_checkpointing=False))


@pytest.mark.parametrize("capability,dtype", [((7, 5), torch.float16), ((8, 0), torch.bfloat16)])
def test_qlora_computes_in_the_dtype_the_gpu_has(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int],
                                                dtype: torch.dtype) -> None:
    """Issue 15 item 7: the 4-bit layers' compute dtype handed to bitsandbytes follows the precision
    choice (fp16 below compute capability 8.0, bf16 from it)."""
    pytest.importorskip("bitsandbytes")
    monkeypatch.setattr(Device, "here", classmethod(lambda cls: Device(True, capability, "GPU")))
    kwargs = train_model.load_kwargs(_config("qlora"))
    assert kwargs["quantization_config"].bnb_4bit_compute_dtype == dtype and kwargs["dtype"] == dtype
