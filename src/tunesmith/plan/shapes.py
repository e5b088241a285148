"""A model's shapes from its config.json alone (no weights): linear layers, parameter counts.

The config comes from a local folder (an adapter folder points at its base), the Hugging Face
cache, or ``known_models.yaml``; the layer layout per ``model_type`` from ``architectures.yaml``.
"""

from __future__ import annotations

import ast
import json
import operator
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from tunesmith.config.refs import looks_like_hub_id
from tunesmith.config.yaml_load import load_table
from tunesmith.errors import TunesmithError
from tunesmith.models.lmhead import head_extra


class PlanError(TunesmithError):
    """The plan cannot be computed from what was given (names the key at fault)."""


@dataclass(frozen=True)
class Linear:
    name: str
    in_features: int
    out_features: int
    bias: bool

    @property
    def params(self) -> int:
        return self.in_features * self.out_features + (self.out_features if self.bias else 0)


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a model, from its config.json."""

    model_type: str
    source: str  # where the config came from
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    linear: tuple[Linear, ...]  # one decoder layer
    layer_norm_params: int
    final_norm_params: int
    ia3_target: tuple[str, ...]
    ia3_feedforward: tuple[str, ...]
    inputs: tuple[tuple[str, tuple[str, ...]], ...]  # (norm1 | attn | norm2 | mlp, modules reading it)
    stored_dtype: str | None = None
    sliding_window: bool = False  # sliding-window attention in use (no padding-free training)
    head_extras: bool = False  # the LM head soft-caps or scales its logits (no fused loss)

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tied else self.vocab * self.hidden

    @property
    def layer_params(self) -> int:
        return sum(m.params for m in self.linear) + self.layer_norm_params

    @property
    def block_linear_params(self) -> int:
        """Weights of the decoder layers' linear modules (what 4-/8-bit quantisation converts)."""
        return self.layers * sum(m.in_features * m.out_features for m in self.linear)

    @property
    def total_params(self) -> int:
        return self.embedding_params + self.lm_head_params + self.layers * self.layer_params + self.final_norm_params

    @property
    def matmul_params(self) -> int:
        """Parameters used in a matrix multiply per token (the embedding lookup is not one; lm_head is)."""
        return self.layers * sum(m.in_features * m.out_features for m in self.linear) + self.vocab * self.hidden

    def largest_tensor(self) -> int:
        return max([self.embedding_params, *(m.in_features * m.out_features for m in self.linear)])


@cache
def _architectures() -> dict[str, Any]:
    return load_table(resources.files("tunesmith.plan").joinpath("architectures.yaml").read_text("utf-8"))


@cache
def _known_models() -> dict[str, Any]:
    return load_table(resources.files("tunesmith.plan").joinpath("known_models.yaml").read_text("utf-8"))


def known_architectures() -> list[str]:
    return list(_architectures())


def model_shape(base_model: str, model_configs: dict[str, str] | None = None) -> ModelShape:
    """The shapes of ``base_model`` (folder, adapter folder, cached or known hub id)."""
    raw, source = read_model_config(base_model, model_configs or {})
    return shape_from_config(raw, source)


def read_model_config(base_model: str, redirects: dict[str, str]) -> tuple[dict[str, Any], str]:
    """config.json of ``base_model``; ``redirects`` maps a future run's model folder to that run's base."""
    path = Path(base_model)
    if base_model in redirects or str(path.resolve()) in redirects:
        base = redirects.get(base_model) or redirects[str(path.resolve())]
        raw, source = read_model_config(base, {})
        return raw, f"{source} (base of the run that writes {base_model})"
    if path.is_dir():
        return _read_folder(path, base_model, redirects)
    from tunesmith.models import gguf_source, resolve

    if gguf_source(base_model) is not None:  # a GGUF file or catalogue name: its converted folder (once, cached)
        folder = resolve(base_model)
        return _json(Path(folder) / "config.json", base_model), f"converted GGUF ({folder})"
    if not looks_like_hub_id(base_model):
        raise PlanError(f"base_model: {base_model}: no such model folder (the plan reads its config.json)")
    cached = cached_snapshot(base_model)
    if cached is not None:
        return _json(cached / "config.json", base_model), f"Hugging Face cache ({cached})"
    known = _known_models().get(base_model)
    if known is not None:
        return dict(known), f"known_models.yaml ({base_model})"
    raise PlanError(
        f"base_model: {base_model}: config.json is neither a local folder nor in the Hugging Face cache, and "
        f"the hub is offline (download it once, or point base_model at a folder with a config.json)"
    )


def _read_folder(path: Path, name: str, redirects: dict[str, str]) -> tuple[dict[str, Any], str]:
    adapter = path / "adapter_config.json"
    if adapter.is_file() and not (path / "config.json").is_file():
        base = _json(adapter, name).get("base_model_name_or_path")
        if not base:
            raise PlanError(f"base_model: {adapter}: base_model_name_or_path is missing (cannot find the base's config)")
        raw, source = read_model_config(str(base), redirects)
        return raw, f"{source} (base of the adapter {name})"
    config = path / "config.json"
    if not config.is_file():
        raise PlanError(f"base_model: {name}: the folder has no config.json (the plan needs the model's shapes)")
    return _json(config, name), str(config)


def _json(path: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise PlanError(f"base_model: {path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PlanError(f"base_model: {path}: not a JSON object")
    return data


def cached_snapshot(repo_id: str) -> Path | None:
    """The newest Hugging Face cache snapshot folder of ``repo_id`` holding a config.json (no network)."""
    if repo_id.count("/") != 1 or not looks_like_hub_id(repo_id):
        return None
    home = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache/huggingface")) / "hub")
    snapshots = home / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    found = sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime) if snapshots.is_dir() else []
    return found[-1].parent if found else None


def shape_from_config(raw: dict[str, Any], source: str) -> ModelShape:
    """Evaluate the architecture table for this config; an unknown model_type is an error naming it."""
    raw = {**raw.get("text_config", {}), **raw} if "hidden_size" not in raw else raw
    model_type = raw.get("model_type")
    arch = _architectures().get(str(model_type))
    if arch is None:
        raise PlanError(
            f"base_model: model_type {model_type!r} ({source}) has no known layer shapes "
            f"(plan/architectures.yaml knows {', '.join(known_architectures())})"
        )
    names = _names(raw, source)
    linear = tuple(
        Linear(name, _eval(spec[0], names), _eval(spec[1], names), _bias(spec[2], raw))
        for name, spec in arch["linear"].items()
    )
    return ModelShape(
        model_type=str(model_type), source=source, hidden=names["h"], intermediate=names["i"], layers=names["L"],
        heads=names["nh"], kv_heads=names["nkv"], head_dim=names["hd"], vocab=names["V"],
        tied=bool(raw.get("tie_word_embeddings", True)), linear=linear,
        layer_norm_params=_eval(str(arch["norms"]), names), final_norm_params=_eval(str(arch["final_norm"]), names),
        ia3_target=tuple((arch["ia3"] or {}).get("target", ())),
        ia3_feedforward=tuple((arch["ia3"] or {}).get("feedforward", ())),
        inputs=tuple((k, tuple(v)) for k, v in arch["inputs"].items()),
        stored_dtype=raw.get("torch_dtype") or raw.get("dtype"),
        sliding_window=bool(raw.get("sliding_window")) and raw.get("use_sliding_window", True) is not False,
        head_extras=head_extra(raw.get) is not None,
    )


_FIELDS = {"h": "hidden_size", "i": "intermediate_size", "L": "num_hidden_layers", "nh": "num_attention_heads", "V": "vocab_size"}


def _names(raw: dict[str, Any], source: str) -> dict[str, int]:
    names: dict[str, int] = {}
    for short, key in _FIELDS.items():
        value = raw.get(key)
        if not isinstance(value, int) or value <= 0:
            raise PlanError(f"base_model: {source}: {key} is missing or not a positive integer (got {value!r})")
        names[short] = value
    names["nkv"] = int(raw.get("num_key_value_heads") or names["nh"])
    names["hd"] = int(raw.get("head_dim") or names["h"] // names["nh"])
    return names


def _bias(spec: Any, raw: dict[str, Any]) -> bool:
    return bool(raw.get(spec, False)) if isinstance(spec, str) else bool(spec)


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv}


def _eval(expr: Any, names: dict[str, int]) -> int:
    """A whole-number arithmetic expression over the shape names (+ - * // and parentheses)."""

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id in names:
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError(f"architectures.yaml: unsupported expression {expr!r}")

    return walk(ast.parse(str(expr), mode="eval"))
