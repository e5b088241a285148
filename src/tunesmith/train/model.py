"""Load the base model and attach the configured PEFT adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tunesmith.config import Config
from tunesmith.errors import TunesmithError
from tunesmith.train.defaults import Resolved


class ModelError(TunesmithError):
    """The base model (or the requested adapter) cannot be loaded."""


def check_qlora_supported() -> None:
    """Fail before any work when bitsandbytes 4-bit cannot run here."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ModelError("adapter: qlora needs bitsandbytes (pip install 'tunesmith[qlora]')") from None


def load_base(config: Config) -> Any:
    """The base causal LM (nf4-quantised for QLoRA); an adapter folder is merged into its base first."""
    from transformers import BitsAndBytesConfig

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if config.adapter == "qlora":
        check_qlora_supported()
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["dtype"] = torch.bfloat16
    if config.sample_packing:
        kwargs["attn_implementation"] = "sdpa"
    try:
        return load_pretrained(config.base_model, kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"base_model: cannot load '{config.base_model}': {exc}") from None


def load_pretrained(path: str, kwargs: dict[str, Any]) -> Any:
    """A causal LM from a folder, hub id, GGUF file or catalogue name (``tunesmith.models.resolve``);
    an adapter folder is merged into its base."""
    from transformers import AutoModelForCausalLM

    from tunesmith.models import resolve

    path = resolve(path)
    if (Path(path) / "adapter_config.json").is_file():
        from peft import AutoPeftModelForCausalLM

        # an SFT adapter as base (e.g. DPO on top of SFT): merge it into the base weights
        return AutoPeftModelForCausalLM.from_pretrained(path, **kwargs).merge_and_unload()
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def peft_config(config: Config, resolved: Resolved) -> Any | None:
    """The PEFT config for ``config.adapter`` (None for full fine-tuning)."""
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptTuningConfig, TaskType

    if config.adapter in ("lora", "dora", "qlora"):
        return LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=resolved["lora_r"],
            lora_alpha=resolved["lora_alpha"],
            lora_dropout=resolved["lora_dropout"],
            target_modules=config.lora_target_modules,
            layers_to_transform=config.peft_layers_to_transform,
            modules_to_save=config.modules_to_save,
            use_dora=config.adapter == "dora",
        )
    if config.adapter == "prompt":
        return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=config.num_virtual_tokens)
    if config.adapter == "prefix":
        return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=config.num_virtual_tokens)
    if config.adapter == "ia3":
        return IA3Config(task_type=TaskType.CAUSAL_LM, modules_to_save=config.modules_to_save)
    return None


def attach_adapter(model: Any, config: Config, resolved: Resolved, gradient_checkpointing: bool) -> Any:
    """Wrap ``model`` with its adapter; full fine-tuning returns it unchanged."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    pcfg = peft_config(config, resolved)
    if pcfg is None:
        return model
    if config.adapter == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    return get_peft_model(model, pcfg)


def parameter_counts(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
