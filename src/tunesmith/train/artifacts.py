"""Save the trained result in standard formats that stop where training taught them to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.models.load import MODEL_INFO


def model_info(config: Any) -> dict[str, Any]:
    """What inference needs to reproduce training: the base (absolute when local), template, system prompt, the
    config values training set on the base (``base_config``), and the base's weights fingerprint (an adapter is refused on other weights: ``models.load.check_base``)."""
    from tunesmith.config.methods import method_spec
    from tunesmith.models import portable_ref, resolve
    from tunesmith.models.fingerprint import weights_fingerprint

    info = {"base_model": portable_ref(config.base_model),
            "chat_template": config.chat_template, "system_prompt": config.system_prompt,
            "method": config.method, "head": method_spec(config.method).model}
    weights = weights_fingerprint(resolve(config.base_model))
    info = {**info, "base_weights": weights} if weights else info
    return {**info, **_base_config(config)}


def _base_config(config: Any) -> dict[str, Any]:
    """``base_config``: what training set on the base's config (its RoPE scaling), which every stage that loads
    the base for this adapter sets too (``models.load.base_overrides``)."""
    from tunesmith.train.context import scaled_config

    scaled = scaled_config(config)
    return {"base_config": {"rope_parameters": dict(scaled.rope_parameters)}} if scaled is not None else {}


def save_result(model: Any, tokenizer: Any, out: Path, info: dict[str, Any] | None = None,
                state_dict: dict[str, Any] | None = None) -> Path:
    """Adapter folder (or full model) + tokenizer + chat template + generation_config.json,
    and ``tunesmith_model.json`` (``info``: base model, template, system prompt) when given."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    if info is not None:
        (out / MODEL_INFO).write_text(json.dumps(info, indent=2), "utf-8")
    if state_dict is None:
        model.save_pretrained(out)
    else:  # gathered from every rank (FSDP / ZeRO-3), see train/run.py
        model.save_pretrained(out, state_dict=state_dict)
    tokenizer.save_pretrained(out)
    if tokenizer.chat_template:
        (out / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")
    gen = _generation_config(model, tokenizer)
    gen.save_pretrained(out)
    return out


def _generation_config(model: Any, tokenizer: Any) -> Any:
    from peft import PeftModel
    from transformers import GenerationConfig

    base = model.get_base_model() if isinstance(model, PeftModel) else model
    own = getattr(base, "generation_config", None)  # a reward model (sequence classifier) has none
    gen = GenerationConfig.from_dict(own.to_dict()) if own else GenerationConfig()
    from tunesmith.tokenize import end_of_turn_ids

    eot = end_of_turn_ids(tokenizer)
    gen.eos_token_id = eot if len(eot) > 1 else (eot[0] if eot else None)
    gen.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eot[0] if eot else None)
    gen.bos_token_id = tokenizer.bos_token_id
    return gen
