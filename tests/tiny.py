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


def build_model(path: str | Path, tokenizer: Any, arch: str = "llama", hidden: int = 64) -> Any:
    """Save a randomly initialised 2-layer causal LM (and ``tokenizer``) to ``path``; return it."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    config_cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[arch]
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    path = Path(path)
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return model
