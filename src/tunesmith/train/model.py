"""Load the base model (causal LM, or a one-score classifier for reward models) and attach
the configured PEFT adapter."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any, Callable

import torch

from tunesmith.config import Config
from tunesmith.config.adapters import AdapterSpec, adapter_spec
from tunesmith.config.methods import method_spec
from tunesmith.errors import TunesmithError
from tunesmith.models.load import load_pretrained
from tunesmith.config.defaults import Resolved

log = logging.getLogger("tunesmith.train")


class ModelError(TunesmithError):
    """The base model (or the requested adapter) cannot be loaded."""


def check_qlora_supported() -> None:
    """Fail before any work when bitsandbytes 4-bit cannot run here."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ModelError("adapter: qlora needs bitsandbytes (pip install 'tunesmith[qlora]')") from None


def quantization(config: Config) -> str | None:
    """``4bit`` (QLoRA, nf4), ``8bit`` or None (full-precision base)."""
    if adapter_spec(config.adapter).base == "nf4" or config.quantization == "4bit":
        return "4bit"
    return "8bit" if config.quantization == "8bit" else None


def load_kwargs(config: Config) -> dict[str, Any]:
    """``from_pretrained`` arguments: dtype, bitsandbytes quantization, attention implementation."""
    from transformers import BitsAndBytesConfig

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    bits = quantization(config)
    if bits is not None:
        check_qlora_supported()
    if bits == "4bit":
        from tunesmith.models.precision import choose

        compute = choose(config.bf16).compute_dtype  # bf16 only where the GPU has it (compute capability 8.0+)
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
        kwargs["dtype"] = compute
    elif bits == "8bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    attn = attention(config)
    if attn is not None:
        kwargs["attn_implementation"] = attn
    return kwargs


def attention(config: Config) -> str | None:
    """The attention implementation to load: the configured one where it can run, else sdpa.

    FlashAttention needs the flash-attn package and a CUDA GPU; where either is missing the
    run uses sdpa (the same attention, computed differently) and says so. Packing needs a
    mask-aware implementation: sdpa unless one is configured.
    """
    wanted = config.attn_implementation
    if wanted and wanted.startswith("flash_attention") and not _flash_available(wanted):
        log.warning("attn_implementation: %s needs the flash-attn package and a CUDA GPU, which this machine "
                    "lacks: using sdpa (same results)", wanted)
        return "sdpa"
    if wanted:
        return wanted
    return "sdpa" if config.sample_packing else None


def _flash_available(name: str) -> bool:
    package = "flash_attn_interface" if name == "flash_attention_3" else "flash_attn"
    return torch.cuda.is_available() and importlib.util.find_spec(package) is not None


def load_base(config: Config) -> Any:
    """The base model for the method (quantised for QLoRA / 8-bit); an adapter folder is merged first."""
    from tunesmith.train.context import scaled_config

    kind = method_spec(config.method).model
    kwargs = load_kwargs(config)
    scaled = scaled_config(config)
    if scaled is not None:
        kwargs["config"] = scaled
    try:
        return load_pretrained(config.base_model, kwargs, kind)
    except (OSError, ValueError) as exc:
        raise ModelError(f"base_model: cannot load '{config.base_model}': {exc}") from None


def load_frozen(config: Config, path: str, key: str) -> Any:
    """A reference or teacher model: loaded like the base (full precision), in eval mode, no gradients."""
    kwargs = {"dtype": torch.float32}
    try:
        model = load_pretrained(path, kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{key}: cannot load '{path}': {exc}") from None
    model.eval().requires_grad_(False)
    return model


def _lora(spec: AdapterSpec, config: Config, resolved: Resolved, task: Any) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        task_type=task,
        r=resolved["lora_r"],
        lora_alpha=resolved["lora_alpha"],
        lora_dropout=resolved["lora_dropout"],
        target_modules=config.lora_target_modules,
        layers_to_transform=config.peft_layers_to_transform,
        modules_to_save=config.modules_to_save,
        use_dora=spec.dora,
    )


def _prompt(spec: AdapterSpec, config: Config, resolved: Resolved, task: Any) -> Any:
    from peft import PromptTuningConfig

    return PromptTuningConfig(task_type=task, num_virtual_tokens=config.num_virtual_tokens)


def _prefix(spec: AdapterSpec, config: Config, resolved: Resolved, task: Any) -> Any:
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(task_type=task, num_virtual_tokens=config.num_virtual_tokens)


def _ia3(spec: AdapterSpec, config: Config, resolved: Resolved, task: Any) -> Any:
    from peft import IA3Config

    return IA3Config(task_type=task, modules_to_save=config.modules_to_save)


# ``peft:`` of adapters.yaml -> the PEFT config builder (``none``: full fine-tuning, no adapter)
PEFT_BUILDERS: dict[str, Callable[[AdapterSpec, Config, Resolved, Any], Any] | None] = {
    "lora": _lora, "prompt": _prompt, "prefix": _prefix, "ia3": _ia3, "none": None,
}


def peft_config(config: Config, resolved: Resolved) -> Any | None:
    """The PEFT config for ``config.adapter`` (None for full fine-tuning)."""
    from peft import TaskType

    spec = adapter_spec(config.adapter)
    build = PEFT_BUILDERS[spec.peft]
    if build is None:
        return None
    task = TaskType.SEQ_CLS if method_spec(config.method).model == "reward" else TaskType.CAUSAL_LM
    return build(spec, config, resolved, task)


def attach_adapter(model: Any, config: Config, resolved: Resolved, gradient_checkpointing: bool) -> Any:
    """Wrap ``model`` with its adapter (or continue ``lora_model_dir``); full fine-tuning returns it unchanged."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    from tunesmith.models.load import check_base, load_adapter

    pcfg = peft_config(config, resolved)
    if pcfg is None:
        return model
    if quantization(config) is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    if config.lora_model_dir:
        if not (Path(config.lora_model_dir) / "adapter_config.json").is_file():
            raise ModelError(f"lora_model_dir: {config.lora_model_dir} has no adapter_config.json (not a PEFT adapter)")
        check_base(config.lora_model_dir, config.base_model)
        return load_adapter(model, config.lora_model_dir, is_trainable=True)
    return get_peft_model(model, pcfg)


def parameter_counts(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
