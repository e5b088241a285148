"""Load a model folder written by tunesmith (or any Hugging Face causal LM folder or hub id)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config.refs import looks_like_hub_id
from tunesmith.errors import TunesmithError

# where a model lives inside the folders tunesmith writes, most finished first
_CANDIDATES = ("", "merged", "model", "run/model")


@dataclass
class Loaded:
    """A model ready to generate: the model (float32, eval mode), its tokenizer and stop tokens."""

    path: Path
    model: Any
    tokenizer: Any
    eos_ids: list[int]
    kind: str  # "adapter" | "full"
    system_prompt: str | None = None
    # the local folders the weights were read from (an adapter's, then its base's); () for a hub id
    sources: tuple[Path, ...] = ()

    def fingerprint(self) -> str | None:
        """A key that changes whenever the weights may have (``infer.cache.fingerprint``); None for a hub model."""
        from tunesmith.infer.cache import fingerprint

        return fingerprint(self.sources, self.model.dtype) if self.sources else None


def resolve_model_dir(path: str | Path, prefer: tuple[str, ...] = _CANDIDATES) -> Path:
    """The model folder in ``path``: itself, ``merged/``, ``model/`` or ``run/model/`` (``prefer`` order)."""
    root = Path(path)
    if not root.exists():
        raise TunesmithError(f"{root}: no such file or directory")
    for sub in prefer:
        folder = root / sub if sub else root
        if (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file():
            return folder
    raise TunesmithError(
        f"{root}: no model found (looked for config.json or adapter_config.json in "
        f"{', '.join(repr(s or '.') for s in prefer)})"
    )


def info(folder: Path) -> dict[str, Any]:
    """``tunesmith_model.json`` of a folder tunesmith saved (base model, template, system prompt), else {}."""
    from tunesmith.models.load import MODEL_INFO

    path = folder / MODEL_INFO
    return json.loads(path.read_text("utf-8")) if path.is_file() else {}


def load(path: str | Path, *, base_model: str | None = None, tokenizer: Any = None,
         trust_remote_code: bool = False) -> Loaded:
    """Load ``path`` (a folder, see ``resolve_model_dir``, or a hub id) for generation on CPU in float32.

    An adapter loads on ``base_model``, else the base recorded at training time. ``tokenizer``
    (e.g. the run's, with its configured template) replaces the folder's own. Code shipped with
    the model runs only with ``trust_remote_code``. A GGUF file or
    catalogue name loads its converted folder (``tunesmith.models.resolve``).
    """
    from tunesmith.models import resolve

    path = resolve(str(path))
    if "/" in str(path) and looks_like_hub_id(str(path)):
        folder, meta = Path(str(path)), {}  # a hub id (org/name)
    else:
        folder = resolve_model_dir(path)
        meta = info(folder)
    tokenizer = tokenizer or _tokenizer(str(folder), trust_remote_code)
    if (folder / "adapter_config.json").is_file():
        base = _base_of(folder, base_model or meta.get("base_model"))
        model, kind = _adapter(folder, base, trust_remote_code), "adapter"
        below = _weight_folders(base)
        sources = (folder, *below) if below else ()
    else:
        model, kind = _model(str(folder), str(folder), trust_remote_code), "full"
        sources = (folder,) if folder.is_dir() else ()
    model.eval()
    return Loaded(folder, model, tokenizer, stop_ids(folder, tokenizer), kind, meta.get("system_prompt"), sources)


def _base_of(folder: Path, base_model: str | None) -> str:
    """The base an adapter loads on: ``base_model``, else the one its adapter_config.json records."""
    recorded = json.loads((folder / "adapter_config.json").read_text("utf-8")).get("base_model_name_or_path")
    base = base_model or recorded
    if not base:
        raise TunesmithError(f"{folder / 'adapter_config.json'}: base_model_name_or_path is empty; pass the base model")
    return str(base)


def _weight_folders(ref: str) -> tuple[Path, ...]:
    """The local folders a base's weights are read from: its folder (a GGUF file or catalogue name: the converted
    one), and for an adapter used as base those of its own base too; () when one of them is a hub id."""
    from tunesmith.models import resolve

    folder = Path(resolve(ref))
    if not folder.is_dir():
        return ()
    if not (folder / "adapter_config.json").is_file():
        return (folder,)
    below = _weight_folders(_base_of(folder, info(folder).get("base_model")))
    return (folder, *below) if below else ()


def _adapter(folder: Path, base: str, trust_remote_code: bool = False) -> Any:
    from tunesmith.models.load import base_overrides, check_base, load_adapter

    check_base(folder, base)  # before the base loads: an adapter on other base weights is refused
    # the base as training loaded it (its RoPE scaling, say): not as its own config.json describes it
    base_model = _model(base, f"{folder}: its base model", trust_remote_code, base_overrides(folder))
    return load_adapter(base_model, folder)


def _model(path: str, what: str, trust_remote_code: bool = False, overrides: dict[str, Any] | None = None) -> Any:
    """A causal LM in float32; an adapter folder as base is merged into its own base first."""
    import torch

    from tunesmith.models.load import load_pretrained

    try:
        kwargs: dict[str, Any] = {"dtype": torch.float32}
        if trust_remote_code:
            kwargs["trust_remote_code"] = True
        return load_pretrained(path, kwargs, overrides=overrides)
    except (OSError, ValueError) as exc:
        raise TunesmithError(f"{what}: cannot load '{path}': {str(exc).splitlines()[0]}") from None


def _tokenizer(path: str, trust_remote_code: bool = False) -> Any:
    from tunesmith.tokenize import load_saved

    return load_saved(path, trust_remote_code)


def stop_ids(folder: Path, tokenizer: Any) -> list[int]:
    """EOS ids of the folder's generation config plus the template's end-of-turn tokens."""
    from transformers import GenerationConfig

    from tunesmith.tokenize import end_of_turn_ids

    ids: list[int] = []
    if (folder / "generation_config.json").is_file():
        eos = GenerationConfig.from_pretrained(str(folder)).eos_token_id
        ids += [int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None]
    ids += [i for i in end_of_turn_ids(tokenizer) if i not in ids]
    if not ids:
        raise TunesmithError(f"{folder}: no stop token (no eos_token and no end-of-turn token in the template)")
    return ids
