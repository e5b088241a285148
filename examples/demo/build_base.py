"""Build the demo's tiny offline base: a byte-level BPE tokenizer trained on the example data
plus a randomly initialised 2-layer Llama (no download). Until the quickstart's pretrained
embedded base lands, `make demo` fine-tunes this model to show the whole pipeline offline.

    python examples/demo/build_base.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parents[2]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def corpus() -> list[str]:
    out = []
    for path in sorted((ROOT / "examples/data").glob("*.jsonl")):
        for line in path.read_text("utf-8").splitlines():
            out.append(json.dumps(json.loads(line)))
    return out


def main(out: Path) -> None:
    if (out / "config.json").is_file():
        print(f"base model already built: {out}")
        return
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus(), trainers.BpeTrainer(
        vocab_size=1024, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    chatml = (ROOT / "src/tunesmith/tokenize/templates/chatml.jinja").read_text("utf-8")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=chatml)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    fast.save_pretrained(out)
    print(f"built tiny base model ({sum(p.numel() for p in model.parameters()):,} parameters): {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/demo/base"))
