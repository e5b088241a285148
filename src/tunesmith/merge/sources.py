"""The fine-tunes a merge combines: where each model, its base and its run config are, and
whether they can be merged at all (same architecture, same tokenizer, same chat template)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config import Config
from tunesmith.errors import TunesmithError

# a source may be a run directory, a quickstart folder or a model folder; adapters first, so that
# adapters on one base can be combined by PEFT without a detour through full models
PREFER = ("", "model", "run/model", "merged")
# what must agree for two checkpoints to be averaged tensor by tensor
SHAPE_KEYS = ("model_type", "architectures", "hidden_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "intermediate_size", "vocab_size", "head_dim", "tie_word_embeddings")


@dataclass
class Source:
    """One fine-tune: its model folder (adapter or full model), the base it started from, its run config."""

    label: str
    path: Path
    folder: Path
    kind: str  # "adapter" | "full"
    base: str | None
    info: dict[str, Any] = field(default_factory=dict)
    config: Config | None = None
    config_path: Path | None = None

    @property
    def architecture_dir(self) -> str:
        """Where the architecture's config.json is: the folder itself, or an adapter's base."""
        return str(self.folder) if self.kind == "full" else str(self.base)


def resolve(paths: list[Path]) -> list[Source]:
    """A ``Source`` per path, labelled by folder name (made unique)."""
    from tunesmith import infer

    sources: list[Source] = []
    for path in paths:
        folder = infer.resolve_model_dir(path, prefer=PREFER)
        info = infer.info(folder)
        kind = "adapter" if (folder / "adapter_config.json").is_file() else "full"
        base = info.get("base_model")
        if kind == "adapter" and not base:
            recorded = json.loads((folder / "adapter_config.json").read_text("utf-8"))
            base = recorded.get("base_model_name_or_path")
        config_path = _config_path(Path(path), folder)
        config = _load_config(config_path) if config_path else None
        sources.append(Source(_label(Path(path), [s.label for s in sources]), Path(path), folder, kind, base, info,
                              config, config_path))
    return sources


def _label(path: Path, taken: list[str]) -> str:
    name = path.resolve().name
    name = path.resolve().parent.name if name in {"model", "merged"} else name
    label, n = name, 2
    while label in taken:
        label, n = f"{name}-{n}", n + 1
    return label


def _config_path(path: Path, folder: Path) -> Path | None:
    """The run config that trained this model: ``config.yaml`` of its run directory."""
    for candidate in (folder, folder.parent, path, path / "run"):
        if (candidate / "config.yaml").is_file():
            return candidate / "config.yaml"
    return None


def _load_config(path: Path) -> Config:
    from tunesmith.config import load_config

    return load_config(str(path))


def check_compatible(sources: list[Source]) -> None:
    """Refuse, before any work, sources that cannot be merged tensor by tensor or share no tokenizer."""
    from transformers import AutoConfig

    from tunesmith.tokenize import load_saved

    shapes = {s.label: _shape(AutoConfig.from_pretrained(s.architecture_dir).to_dict()) for s in sources}
    first = sources[0].label
    for label, shape in shapes.items():
        diff = {k: (shapes[first].get(k), v) for k, v in shape.items() if shapes[first].get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: {a} vs {b}" for k, (a, b) in diff.items())
            raise TunesmithError(f"cannot merge {first} and {label}: different architectures ({detail}); "
                                 "only fine-tunes of one base model can be merged - retrain one of them from the "
                                 "other's base")
    tokenizers = {s.label: load_saved(s.folder) for s in sources}
    for label, tok in tokenizers.items():
        if _vocabulary(tok) != _vocabulary(tokenizers[first]):
            raise TunesmithError(f"cannot merge {first} and {label}: different tokenizers (vocabulary, merges or "
                                 "special tokens differ), so the same id means different text in each; merge only "
                                 "fine-tunes that kept their base's tokenizer")
        if (tok.chat_template or "") != (tokenizers[first].chat_template or ""):
            raise TunesmithError(f"cannot merge {first} and {label}: they were trained with different chat templates "
                                 f"({sources[0].info.get('chat_template')} vs "
                                 f"{next(s for s in sources if s.label == label).info.get('chat_template')}), so the "
                                 "merged model would answer reliably in neither; retrain one with the other's template")


def _shape(config: dict[str, Any]) -> dict[str, Any]:
    text = config.get("text_config") or {}
    return {k: config.get(k, text.get(k)) for k in SHAPE_KEYS}


def _vocabulary(tokenizer: Any) -> str:
    added = sorted((i, t.content, t.special) for i, t in tokenizer.added_tokens_decoder.items())
    data = json.loads(tokenizer.backend_tokenizer.to_str())
    data.pop("truncation", None), data.pop("padding", None)
    blob = json.dumps({"tok": data, "added": added, "specials": sorted(tokenizer.special_tokens_map.items(),
                                                                        key=str)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def same_base(base: str) -> str:
    """How two sources' recorded bases are compared: a local folder by its resolved path, a hub id as written."""
    return str(Path(base).resolve()) if Path(base).exists() else base


def common_base(sources: list[Source], override: str | None) -> str:
    """The base every source was fine-tuned from (``override`` wins); sources disagreeing are refused."""
    if override:
        return override
    bases = {s.label: s.base for s in sources}
    missing = [label for label, base in bases.items() if not base]
    if missing:
        raise TunesmithError(f"{', '.join(missing)}: no base model recorded (tunesmith_model.json); pass --base DIR")
    resolved = {label: same_base(b) for label, b in bases.items()}
    if len(set(resolved.values())) > 1:
        listing = ", ".join(f"{label}: {base}" for label, base in resolved.items())
        raise TunesmithError(f"the sources were fine-tuned from different bases ({listing}); task vectors are "
                             "differences from one base - pass --base DIR if they really share one")
    return next(iter(resolved.values()))
