"""Write a causal LM + its tokenizer + chat template + stop ids into one GGUF file with the ``gguf`` library.

Which architectures and quant types are written is data (``architectures.yaml``, ``quants.yaml``);
tensor names come from ``gguf.TensorNameMap``, quantisation from ``gguf.quants``. Everything that
cannot be written is refused by ``refuse_unsupported`` before a weight is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from tunesmith.config.yaml_load import load_table
from tunesmith.errors import TunesmithError

CONVERTER_HINT = "llama.cpp's convert_hf_to_gguf.py on the hf export (tunesmith export RUN --format hf)"


@dataclass(frozen=True)
class ArchSpec:
    hf: str
    arch: Any  # gguf.MODEL_ARCH
    permute_qk: bool
    head_dim: bool


@dataclass(frozen=True)
class QuantSpec:
    name: str
    tensor_type: Any  # gguf.GGMLQuantizationType
    file_type: Any  # gguf.LlamaFileType


@dataclass
class TokenizerMeta:
    """The tokenizer as GGUF metadata (llama.cpp's keys)."""

    model: str
    pre: str
    tokens: list[str]
    types: list[int]
    merges: list[str]
    special_ids: dict[str, int]
    add_bos: bool
    chat_template: str | None


@dataclass
class WriteStats:
    path: Path
    tensors: dict[str, int] = field(default_factory=dict)  # ggml type -> count
    f16_fallbacks: int = 0
    bytes: int = 0


@cache
def _table(name: str) -> dict[str, dict[str, Any]]:
    return load_table((resources.files("tunesmith.export") / name).read_text("utf-8"))


def quant_names() -> list[str]:
    return list(_table("quants.yaml"))


def tolerance(quant: str) -> float:
    """The logit check's bound for ``quant``, relative to the largest |logit| (see quants.yaml)."""
    return float(_table("quants.yaml")[quant]["tolerance"])


def checked_against(quant: str) -> str:
    """What the logits of a ``quant`` file are checked against: ``trained`` or ``stored`` (see quants.yaml)."""
    return str(_table("quants.yaml")[quant]["against"])


def as_stored(data: Any, quant: str) -> Any:
    """``data`` (float32) as a ``quant`` file stores it, read back in float32: the same types and blocks as
    ``write_gguf`` (q/k's row permutation moves whole rows, so it changes no block)."""
    import numpy as np
    from gguf import quants

    stored, qtype = _convert(data, quant_spec(quant), WriteStats(Path()))
    if qtype is None:  # F32 / F16: the array itself
        return stored.astype(np.float32)
    return quants.dequantize(stored, qtype).reshape(data.shape).astype(np.float32)


def arch_spec(config: Any) -> ArchSpec:
    import gguf

    table = _table("architectures.yaml")
    hf = next((a for a in (getattr(config, "architectures", None) or []) if a in table), None)
    if hf is None:
        raise TunesmithError(f"GGUF export: architecture {getattr(config, 'architectures', None)} is not one tunesmith "
                             f"writes ({', '.join(table)}); use {CONVERTER_HINT}")
    row = table[hf]
    return ArchSpec(hf, gguf.MODEL_ARCH[row["arch"]], bool(row["permute_qk"]), bool(row["head_dim"]))


def quant_spec(name: str) -> QuantSpec:
    """The quant type, refused (with the reason) when the installed gguf library cannot write it."""
    import gguf
    import numpy as np
    from gguf import quants

    table = _table("quants.yaml")
    if name not in table:
        raise TunesmithError(f"--quant {name}: not one of {', '.join(table)}")
    row = table[name]
    spec = QuantSpec(name, gguf.GGMLQuantizationType[row["tensor_type"]], gguf.LlamaFileType[row["file_type"]])
    try:
        quants.quantize(np.zeros((1, 256), dtype=np.float32), spec.tensor_type)
    except NotImplementedError:
        raise TunesmithError(
            f"--quant {name}: the gguf library (gguf-py {_version()}) cannot quantise {row['tensor_type']} "
            "(only llama.cpp's C++ quantizer writes k-quants); export --quant f16, then run "
            f"`llama-quantize model-f16.gguf model-{name}.gguf {name.upper()}`, or use --quant q8_0") from None
    return spec


def _version() -> str:
    from importlib.metadata import version

    return version("gguf")


def refuse_unsupported(config: Any, tokenizer: Any, end_of_turn: list[int], quant: str) -> None:
    """Every reason the GGUF could not be written or would load wrongly, before any weight is read."""
    arch_spec(config)
    quant_spec(quant)
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise TunesmithError(f"GGUF export: rope scaling {rope.get('rope_type', rope.get('type'))!r} is not written "
                             f"by tunesmith's GGUF writer; use {CONVERTER_HINT}")
    tokenizer_meta(tokenizer, config.vocab_size, end_of_turn)


def tokenizer_meta(tokenizer: Any, n_vocab: int, end_of_turn: list[int]) -> TokenizerMeta:
    """Tokens, token types, merges and special ids of a byte-level BPE tokenizer (gguf's "gpt2" model)."""
    import gguf

    data = json.loads(tokenizer.backend_tokenizer.to_str())
    if data["model"]["type"] != "BPE" or (data.get("decoder") or {}).get("type") != "ByteLevel":
        kind = f"{data['model']['type']} with a {(data.get('decoder') or {}).get('type')} decoder"
        raise TunesmithError(f"GGUF export: the tokenizer is {kind}; tunesmith writes byte-level BPE tokenizers "
                             f"(GPT-2 / Llama 3 / Qwen style) only; use {CONVERTER_HINT}")
    if len(tokenizer) > n_vocab:
        raise TunesmithError(f"GGUF export: the tokenizer has {len(tokenizer)} tokens but the model only {n_vocab} "
                             "embedding rows")
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(n_vocab):
        token = tokenizer.convert_ids_to_tokens(i) if i < len(tokenizer) else None
        kind = gguf.TokenType.UNUSED if token is None else gguf.TokenType.NORMAL
        if i in added:
            kind = gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED
        tokens.append(token if token is not None else f"[PAD{i}]")
        types.append(int(kind))
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"].get("merges", [])]
    ids = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id, "unk": tokenizer.unk_token_id,
           "pad": tokenizer.pad_token_id}
    closers = [i for i in end_of_turn if i != tokenizer.eos_token_id]
    if len(closers) > 2:
        raise TunesmithError(f"GGUF export: {len(closers) + 1} end-of-turn tokens; GGUF records eos, eot and eom only")
    ids.update(dict(zip(("eot", "eom"), closers)))
    return TokenizerMeta("gpt2", _pre_name(data.get("pre_tokenizer") or {}), tokens, types, merges,
                         {k: int(v) for k, v in ids.items() if v is not None}, renders_bos(tokenizer),
                         tokenizer.chat_template)


def _pre_name(pre: dict[str, Any]) -> str:
    """llama.cpp's name for the pre-tokenizer split (``tokenizer.ggml.pre``)."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    parts = pre.get("pretokenizers") or []
    if len(parts) == 2 and parts[0].get("type") == "Split" and parts[1].get("type") == "ByteLevel":
        regex = (parts[0].get("pattern") or {}).get("Regex")
        names = [name for name, split in GGUF_PRE_TOKENIZER_SPLITS.items() if split == regex]
        if names:
            return names[0]
    raise TunesmithError(f"GGUF export: the tokenizer's pre-tokenizer ({json.dumps(pre)[:120]}...) is not one "
                         f"llama.cpp knows by name; use {CONVERTER_HINT}")


def renders_bos(tokenizer: Any) -> bool:
    """Whether the chat template writes BOS at the start (then llama.cpp must add it: add_bos_token)."""
    from tunesmith.tokenize.spans import render

    if not tokenizer.bos_token or not tokenizer.chat_template:
        return False
    return render(tokenizer, [{"role": "user", "content": "hi"}], add_generation_prompt=True).startswith(
        tokenizer.bos_token)


def write_gguf(model: Any, tokenizer: Any, path: Path, quant: str, end_of_turn: list[int], name: str) -> WriteStats:
    """``model`` (float32) with ``tokenizer`` and its chat template as one GGUF file at ``path``."""
    import gguf

    config = model.config
    spec, qspec = arch_spec(config), quant_spec(quant)
    meta = tokenizer_meta(tokenizer, config.vocab_size, end_of_turn)
    tensors = _tensors(model, spec)  # names checked before the file is opened
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[spec.arch])
    writer.add_name(name)
    writer.add_file_type(int(qspec.file_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _hparams(writer, config, spec)
    _tokenizer(writer, meta)
    stats = WriteStats(path)
    for gguf_name, data in tensors:
        data, qtype = _convert(data, qspec, stats)
        writer.add_tensor(gguf_name, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    stats.bytes = path.stat().st_size
    return stats


def _hparams(writer: Any, config: Any, spec: ArchSpec) -> None:
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    rope = getattr(config, "rope_parameters", None) or {}
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or heads)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config.vocab_size)
    # llama.cpp takes a head as hidden/heads unless these say otherwise: a Llama or Mistral whose head_dim differs
    # (Mistral-Nemo) needs them too, or llama.cpp refuses the file ("invalid n_rot")
    if spec.head_dim or head_dim != config.hidden_size // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)


def _tokenizer(writer: Any, meta: TokenizerMeta) -> None:
    writer.add_tokenizer_model(meta.model)
    writer.add_tokenizer_pre(meta.pre)
    writer.add_token_list(meta.tokens)
    writer.add_token_types(meta.types)
    writer.add_token_merges(meta.merges)
    adders = {"bos": writer.add_bos_token_id, "eos": writer.add_eos_token_id, "unk": writer.add_unk_token_id,
              "pad": writer.add_pad_token_id, "eot": writer.add_eot_token_id, "eom": writer.add_eom_token_id}
    for key, value in meta.special_ids.items():
        adders[key](value)
    writer.add_add_bos_token(meta.add_bos)
    writer.add_add_eos_token(False)
    if meta.chat_template:
        writer.add_chat_template(meta.chat_template)


def _tensors(model: Any, spec: ArchSpec) -> list[tuple[str, Any]]:
    """(GGUF name, float32 array) for every tensor, q/k permuted for llama.cpp's LLAMA rotary layout."""
    import gguf

    config = model.config
    names = gguf.TensorNameMap(spec.arch, config.num_hidden_layers)
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    out, unknown = [], []
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and getattr(config, "tie_word_embeddings", False):
            continue  # llama.cpp reuses token_embd when there is no output.weight
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            unknown.append(hf_name)
            continue
        data = tensor.detach().float().cpu().numpy()
        if spec.permute_qk and (".attn_q." in name or ".attn_k." in name):
            data = _permute(data, heads if ".attn_q." in name else kv_heads)
        out.append((name, data))
    if unknown:
        raise TunesmithError(f"GGUF export: no GGUF name for {', '.join(unknown[:5])}"
                             f"{' ...' if len(unknown) > 5 else ''}; use {CONVERTER_HINT}")
    return out


def _permute(weights: Any, n_head: int) -> Any:
    """llama.cpp's q/k row order (convert_hf_to_gguf.py LlamaModel.permute): per head, interleave the halves."""
    shape = weights.shape
    return weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def _convert(data: Any, spec: QuantSpec, stats: WriteStats) -> tuple[Any, Any]:
    """The array as written and its ggml type: 1-D in F32, matrices in the quant type (F16 if blocks don't fit)."""
    import gguf
    import numpy as np
    from gguf import quants

    qtype = gguf.GGMLQuantizationType
    if data.ndim == 1:
        target = qtype.F32
    elif spec.tensor_type == qtype.F16:
        target = qtype.F16
    else:
        block = gguf.GGML_QUANT_SIZES[spec.tensor_type][0]
        target = spec.tensor_type if data.shape[-1] % block == 0 else qtype.F16
        stats.f16_fallbacks += target != spec.tensor_type
    stats.tensors[target.name] = stats.tensors.get(target.name, 0) + 1
    if target == qtype.F32:
        return data.astype(np.float32), None
    if target == qtype.F16:
        return data.astype(np.float16), None
    return quants.quantize(data, target), target
