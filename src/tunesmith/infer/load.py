"""Load a model folder written by tunesmith (or any Hugging Face causal LM folder)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError

# where a model lives inside the folders tunesmith writes, most finished first
_CANDIDATES = ("", "merged", "model", "run/model")


@dataclass
class Loaded:
    """A model ready to generate: the model (eval mode), its tokenizer and stop tokens."""

    path: Path
    model: Any
    tokenizer: Any
    eos_ids: list[int]
    kind: str  # "adapter" | "full"
    system_prompt: str | None = None


def resolve_model_dir(path: str | Path) -> Path:
    """The model folder in ``path``: itself, ``merged/``, ``model/`` or ``run/model/``."""
    root = Path(path)
    if not root.exists():
        raise TunesmithError(f"{root}: no such file or directory")
    for sub in _CANDIDATES:
        folder = root / sub if sub else root
        if (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file():
            return folder
    raise TunesmithError(
        f"{root}: no model found (looked for config.json or adapter_config.json in "
        f"{', '.join(repr(s or '.') for s in _CANDIDATES)})"
    )


def load(path: str | Path, base_model: str | None = None) -> Loaded:
    """Load the model in ``path`` (see ``resolve_model_dir``) for generation, in float32 on CPU.

    An adapter folder loads its base from ``adapter_config.json`` (or ``base_model``).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    folder = resolve_model_dir(path)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        adapter = json.loads((folder / "adapter_config.json").read_text("utf-8"))
        base = AutoModelForCausalLM.from_pretrained(base_model or adapter["base_model_name_or_path"])
        model, kind = PeftModel.from_pretrained(base, str(folder)), "adapter"
    else:
        model, kind = AutoModelForCausalLM.from_pretrained(str(folder)), "full"
    model.eval()
    gen = GenerationConfig.from_pretrained(str(folder)) if (folder / "generation_config.json").is_file() else None
    eos = gen.eos_token_id if gen is not None and gen.eos_token_id is not None else tokenizer.eos_token_id
    eos_ids = [int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None]
    return Loaded(folder, model, tokenizer, eos_ids, kind, _system_prompt(folder))


def _system_prompt(folder: Path) -> str | None:
    """The ``system_prompt`` the model was trained with, from the run's ``config.yaml``."""
    import yaml

    for config in (folder / "config.yaml", folder.parent / "config.yaml", folder.parent / "run" / "config.yaml"):
        if config.is_file():
            return (yaml.safe_load(config.read_text("utf-8")) or {}).get("system_prompt")
    return None
