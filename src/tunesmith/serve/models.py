"""The served models: one base (or merged/full) model plus LoRA adapters chosen by the request's ``model``.

Every adapter keeps its own tokenizer (chat template), stop ids and trained system prompt, so a
request is rendered exactly as that adapter was trained. Adapters load only from the configured
roots and only from ``adapter_model.safetensors`` (never a pickle).
"""

from __future__ import annotations

import functools
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.infer import virtual
from tunesmith.serve.config import ServeConfig
from tunesmith.serve.errors import APIError, not_found
from tunesmith.serve.tokenbytes import TokenBytes

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed-adapter batch


@dataclass
class ServedModel:
    """One name clients can ask for."""

    name: str
    adapter: str | None  # PEFT adapter name inside the model; None = the base weights
    path: Path
    tokenizer: Any
    eos_ids: list[int]
    system_prompt: str | None
    created: int = field(default_factory=lambda: int(time.time()))
    parent: str | None = None
    users: int = 0  # sequences in flight (an unloaded adapter is deleted once this reaches 0)

    @functools.cached_property
    def sampling(self) -> dict[str, float]:
        """Defaults for a request that sets no ``temperature``/``top_p``: the folder's generation_config.json
        (saved by training from the base's), as ``vllm serve --generation-config`` takes them."""
        path = self.path / "generation_config.json"
        saved = json.loads(path.read_text("utf-8")) if path.is_file() else {}
        return {k: float(saved[k]) for k in ("temperature", "top_p") if isinstance(saved.get(k), (int, float))}

    @functools.cached_property
    def token_bytes(self) -> TokenBytes:
        """token id -> its raw bytes (logprobs)."""
        return TokenBytes(self.tokenizer)


class Models:
    """The model weights and the name -> ServedModel table. Mutated only on the engine thread."""

    def __init__(self, config: ServeConfig):
        from tunesmith import infer

        self.config = config
        self._counter = itertools.count()
        _refuse_pickled_weights(Path(config.model))
        loaded = infer.load(config.model, trust_remote_code=config.trust_remote_code)
        self.model = loaded.model
        self.base_folder = loaded.sources[-1] if loaded.sources else loaded.path  # what runtime adapters go on
        self.base_name = config.served_model_name or _default_name(Path(config.model), loaded.path)
        adapter = "default" if loaded.kind == "adapter" else None
        self.table: dict[str, ServedModel] = {
            self.base_name: ServedModel(self.base_name, adapter, loaded.path, loaded.tokenizer, loaded.eos_ids,
                                        loaded.system_prompt)}
        self.virtual = virtual.of(self.model)  # prompt/prefix tuning: the engine runs its transformer itself
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])
        self.max_len = context_length(config.max_model_len, self.model.config)
        self._retired: list[ServedModel] = []
        for name, path in config.adapters.items():
            try:
                self.add(name, path)
            except APIError as exc:
                raise TunesmithError(f"--adapter {name}={path}: {exc.message}") from None

    @property
    def is_peft(self) -> bool:
        from peft import PeftModel

        return isinstance(self.model, PeftModel)

    @property
    def runner(self) -> Any:
        """The module the engine calls: the model, or under a prompt/prefix-tuning adapter its transformer."""
        return self.model if self.virtual is None else self.virtual.model

    def names(self) -> list[str]:
        return list(self.table)

    def get(self, name: str) -> ServedModel:
        served = self.table.get(name)
        if served is None:
            raise not_found(name, self.names())
        return served

    def add(self, name: str, path: str | Path) -> ServedModel:
        """Load the LoRA adapter at ``path`` as ``name`` (checks first: roots, safetensors, LoRA, vocabulary)."""
        from tunesmith import infer

        if name in self.table:
            raise APIError(400, f"The model '{name}' is already loaded", param="lora_name", code="adapter_exists")
        folder = self.check_adapter(path)
        if self.virtual is not None:
            raise APIError(400, f"the served model is a {'prefix' if self.virtual.prefix else 'prompt'}-tuning "
                           "adapter; LoRA adapters are served on a base or merged model", param="lora_path",
                           code="adapter_incompatible")
        internal = f"adapter{next(self._counter)}"
        from tunesmith.models.load import BaseMismatchError, IncompleteCheckpointError, check_base, load_adapter

        differs = _base_config_differs(self.model.config, folder)
        if differs:
            raise APIError(400, f"{folder}: {differs}", param="lora_path", code="adapter_incompatible")
        try:  # a refused adapter is taken out again: the served models answer as before
            check_base(folder, self.base_folder)
            self.model = load_adapter(self.model, folder, adapter_name=internal)
        except (BaseMismatchError, IncompleteCheckpointError, RuntimeError, ValueError, KeyError, OSError) as exc:
            raise APIError(400, f"cannot load the adapter: {str(exc).splitlines()[0]}", param="lora_path",
                           code="adapter_incompatible") from None
        self.model.eval()
        base = self.table[self.base_name]
        tokenizer = base.tokenizer
        if (folder / "tokenizer_config.json").is_file():
            tokenizer = _tokenizer(folder)
            if len(tokenizer) != len(base.tokenizer):
                self.model.delete_adapter(internal)
                raise APIError(400, f"{folder}: its tokenizer has {len(tokenizer)} tokens, the served model "
                               f"{len(base.tokenizer)}", param="lora_path", code="adapter_incompatible")
        meta = infer.info(folder)
        system_prompt = meta["system_prompt"] if "system_prompt" in meta else base.system_prompt
        served = ServedModel(name, internal, folder, tokenizer, infer.stop_ids(folder, tokenizer), system_prompt,
                             parent=self.base_name)
        self.table[name] = served
        return served

    def remove(self, name: str) -> None:
        """Stop serving ``name``; its weights are deleted once no sequence uses them."""
        served = self.table.get(name)
        if served is None or name == self.base_name:
            code = "cannot_unload_base" if name == self.base_name else "adapter_not_found"
            raise APIError(404 if served is None else 400, f"The adapter '{name}' is not loaded"
                           if served is None else f"'{name}' is the served model, not an adapter",
                           param="lora_name", code=code)
        del self.table[name]
        self._retired.append(served)
        self.collect()

    def collect(self) -> None:
        """Delete retired adapters that no sequence uses any more."""
        for served in [s for s in self._retired if s.users == 0]:
            self._retired.remove(served)
            if served.adapter is not None:
                self.model.delete_adapter(served.adapter)

    def check_adapter(self, path: str | Path) -> Path:
        """The adapter folder, resolved; refuses paths outside the roots, pickles and non-LoRA adapters."""
        folder = Path(path).expanduser().resolve()
        roots = self.config.roots()
        if not any(folder == root or root in folder.parents for root in roots):
            allowed = ", ".join(str(r) for r in roots) or "none configured (use --adapter-root)"
            raise APIError(403, f"{path}: adapters load only from the configured roots ({allowed})",
                           param="lora_path", code="adapter_outside_roots", type="permission_error")
        if not (folder / "adapter_config.json").is_file():
            raise APIError(400, f"{path}: not an adapter folder (no adapter_config.json)", param="lora_path",
                           code="adapter_not_found")
        if not (folder / "adapter_model.safetensors").is_file():
            raise APIError(400, f"{path}: no adapter_model.safetensors (pickled weights are never loaded)",
                           param="lora_path", code="adapter_not_safetensors")
        peft_type = json.loads((folder / "adapter_config.json").read_text("utf-8")).get("peft_type")
        if peft_type != "LORA":
            raise APIError(400, f"{path}: peft_type {peft_type}; only LoRA adapters can share a batch",
                           param="lora_path", code="adapter_not_lora")
        return folder


def _base_config_differs(served: Any, folder: Path) -> str | None:
    """What the adapter's training set on its base (``models.load.base_overrides``: RoPE scaling) that the served
    model does not have: on it the adapter would see other positions than it was trained with."""
    from tunesmith.models.load import base_overrides

    for key, wanted in base_overrides(folder).items():
        have = getattr(served, key, None)
        same = isinstance(wanted, dict) and isinstance(have, dict) and all(have.get(k) == v for k, v in wanted.items())
        if not same and have != wanted:
            return (f"trained on its base with {key} {wanted}; the served model has {have}: serve the adapter as "
                    "the model (tunesmith serve ADAPTER) or on a base loaded the same way")
    return None


def context_length(asked: int | None, model_config: Any) -> int:
    """``--max-model-len``, refused past the positions the model was trained on, its RoPE scaling included
    (learned position tables raise past them, rotary ones answer from outside the trained context); default:
    those positions (``models.positions``, read as vLLM reads them)."""
    from tunesmith.models.positions import positions

    trained = positions(model_config)
    if asked is None:
        return trained.usable if trained else 2048
    if trained is not None and asked > trained.usable:
        raise TunesmithError(f"--max-model-len {asked} is larger than the model's {trained.describe()}; "
                             f"use at most {trained.usable}")
    return asked


def _tokenizer(folder: Path) -> Any:
    from tunesmith.tokenize import load_saved

    return load_saved(folder)


def _default_name(given: Path, folder: Path) -> str:
    """The folder name the user typed (``outputs/quickstart`` -> ``quickstart``), else the model folder's."""
    return (given.name if given.exists() else str(given)) or folder.name


def _refuse_pickled_weights(given: Path) -> None:
    from tunesmith import infer

    if not given.exists():
        return  # a hub id: transformers prefers safetensors itself
    folder = infer.resolve_model_dir(given)
    if any(folder.glob("*.bin")) and not any(folder.glob("*.safetensors")):
        raise TunesmithError(f"{folder}: only pickled weights (*.bin); serve loads safetensors only "
                             "(re-save the model with save_pretrained)")
