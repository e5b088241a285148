"""Tiny, local, download-free tokenizer and model builders that tests share.

``build_tokenizer`` trains a small BPE with ``tokenizers`` (milliseconds; byte-level like
GPT-2/Llama-3/Qwen, or sentencepiece-style with ``▁`` word markers like Llama-2/Mistral) and saves
``tokenizer.json`` + ``tokenizer_config.json``; ``build_model`` saves a 2-layer causal LM
(Llama or Qwen2 architecture) next to its tokenizer, so the folder is a complete ``base_model``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

_WORDS = (
    "the of and to in is was for on that with as by at from it his an were are which this be "
    "has had or not but first one their its new after who they have her she two been other when "
    "there all during into school time may years more most only over city some world would where "
    "later up such used many can state about national out known university united then made "
    "hello hi thanks thank you please help answer question what how why who capital france paris "
    "berlin germany weather today sunny rain tool call function result python code write list "
    "sure here is a short poem about cats dogs birds the quick brown fox jumps over lazy dog "
    "assistant user system model human bot instruction response context input output"
).split()

SPECIAL_BOS = "<s>"
SPECIAL_EOS = "</s>"


def _corpus() -> list[str]:
    lines = []
    for i in range(len(_WORDS)):
        window = _WORDS[i : i + 12] + _WORDS[: max(0, i + 12 - len(_WORDS))]
        lines.append(" ".join(window).capitalize() + ". " + " ".join(reversed(window)) + "?\n")
    return lines * 3


def build_tokenizer(
    path: str | Path,
    chat_template: str | None = None,
    extra_special: Sequence[str] = (),
    *,
    pad_token: str | None = None,
    bos_token: str | None = SPECIAL_BOS,
    eos_token: str | None = SPECIAL_EOS,
    vocab_size: int = 600,
    style: Literal["byte_level", "sentencepiece"] = "byte_level",
) -> Any:
    """Train a BPE, save it to ``path`` and return it loaded with AutoTokenizer.

    ``extra_special`` are added as special tokens (e.g. ``<|im_start|>``); ``pad_token`` may be a
    new token, the eos string (pad == eos) or None (no pad token).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    specials = [t for t in (bos_token, eos_token, pad_token, *extra_special) if t]
    specials = list(dict.fromkeys(specials))
    if style == "byte_level":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:  # sentencepiece-style: '▁' marks word starts; ASCII only (other characters become <unk>)
        specials = ["<unk>", *specials]
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        alphabet = [chr(c) for c in range(32, 127)] + ["▁", "\n"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(_corpus(), trainer)
    tok.save(str(path / "tokenizer.json"))
    config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 4096}
    if style == "sentencepiece":
        config["unk_token"] = "<unk>"
    for key, value in (("bos_token", bos_token), ("eos_token", eos_token), ("pad_token", pad_token)):
        if value:
            config[key] = value
    if chat_template is not None:
        config["chat_template"] = chat_template
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2), "utf-8")
    return AutoTokenizer.from_pretrained(str(path))


def build_model(path: str | Path, tokenizer: Any, arch: str = "llama", hidden: int = 64,
                max_positions: int = 1024, layers: int = 2, **extra: Any) -> Any:
    """Save a randomly initialised causal LM of ``layers`` layers (2; ``extra``: more config
    entries) and ``tokenizer`` to ``path``; return it."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    config_cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[arch]
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        **extra,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    path = Path(path)
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return model


def build_chatml_model(path: str | Path, hidden: int = 32) -> Any:
    """A ChatML tokenizer (``<|im_end|>`` as EOS, ``<pad>`` as pad) and a tiny Llama in ``path``; returns the tokenizer."""
    from tunesmith.tokenize.tokenizer import template_text

    tok = build_tokenizer(path, template_text("chatml"), ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>",
                          pad_token="<pad>")
    build_model(path, tok, hidden=hidden)
    return tok


def build_gguf(path: str | Path, tokenizer_dir: str | Path, model: Any, *, quant: str = "F32",
               arch: str = "llama", drop: tuple[str, ...] = ()) -> Path:
    """Write ``model`` (a Llama from ``build_model``) and the byte-level BPE in ``tokenizer_dir`` as a GGUF
    file the way llama.cpp's converter does (q/k rows permuted, GGUF tensor names, the vocabulary,
    merges, control tokens and chat template in the metadata). ``quant``: F32, F16 or Q8_0 for the
    2-D weights; ``arch`` is written as ``general.architecture`` as given; the GGUF tensors named in
    ``drop`` are left out (a damaged file)."""
    import gguf
    import numpy as np

    cfg = model.config
    tok = json.loads((Path(tokenizer_dir) / "tokenizer.json").read_text("utf-8"))
    tok_config = json.loads((Path(tokenizer_dir) / "tokenizer_config.json").read_text("utf-8"))
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    specials = {t["content"] for t in tok["added_tokens"] if t["special"]}
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny-test-llama")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([t for t, _ in vocab])
    writer.add_token_types([3 if t in specials else 1 for t, _ in vocab])  # 3: CONTROL, 1: NORMAL
    writer.add_token_merges(merges)
    for key, add in (("bos_token", writer.add_bos_token_id), ("eos_token", writer.add_eos_token_id),
                     ("pad_token", writer.add_pad_token_id)):
        if tok_config.get(key):
            add(tok["model"]["vocab"][tok_config[key]])
    writer.add_add_bos_token(False)
    template_file = Path(tokenizer_dir) / "chat_template.jinja"
    template = tok_config.get("chat_template") or (template_file.read_text("utf-8") if template_file.is_file() else None)
    if template:
        writer.add_chat_template(template)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        data = tensor.detach().float().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = _permute(data, cfg.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            data = _permute(data, cfg.num_key_value_heads)
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name in drop:
            continue
        if data.ndim == 2 and quant != "F32":
            qtype = gguf.GGMLQuantizationType[quant]
            writer.add_tensor(name, gguf.quantize(data, qtype), raw_dtype=qtype)  # the shape from the bytes
        else:
            writer.add_tensor(name, np.ascontiguousarray(data, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


def _permute(weights: Any, heads: int) -> Any:
    """llama.cpp's row order for q/k projections (transformers' GGUF loader undoes it)."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))
