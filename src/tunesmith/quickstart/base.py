"""The quickstart's base model: a real pretrained one from the model catalogue (converted once from
its GGUF, see ``tunesmith.models``), or the embedded one tunesmith builds itself, once, then caches.

The embedded base:

A byte-level BPE tokenizer is trained on the project-written corpus (``corpus.py``), a small
Llama is initialised at random, and tunesmith's own ``cpt`` stage pretrains it. The result is a
normal Hugging Face model folder (config, safetensors, tokenizer with the ChatML template,
generation config) under ``<cache>/base/<recipe hash>``, so it loads offline with
``AutoModelForCausalLM.from_pretrained``. The hash covers the recipe, the catalogue, the
generators' source and the package version, so any change builds a new base instead of
reusing a stale one (or one whose corpus saw what is now a test item).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from tunesmith import __version__
from tunesmith.config.yaml_load import load_table
from tunesmith.models.cache import building, cache_root, publish, sweep
from tunesmith.quickstart import corpus, tasks

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
CARD = "tunesmith_base.json"


@cache
def recipe() -> dict[str, Any]:
    """The quickstart recipe (``recipe.yaml``)."""
    return load_table((resources.files("tunesmith.quickstart") / "recipe.yaml").read_text("utf-8"))


def build_key(profile: str) -> str:
    """Hash of everything that determines the base's weights."""
    spec = recipe()["base"]
    code = resources.files("tunesmith.quickstart")
    parts = {
        "version": __version__,
        # the generators' code decides the corpus and the held-out pool: any edit means a new base
        "code": hashlib.sha256(b"".join(code.joinpath(f).read_bytes() for f in ("corpus.py", "tasks.py"))).hexdigest(),
        "seed": recipe()["seed"],
        "base": {k: v for k, v in spec.items() if k != "profiles"},
        "profile": spec["profiles"][profile],
        "catalogue": tasks.catalogue(),
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]
    return f"{profile}-{digest}"


@dataclass
class Base:
    """The base model folder and what is known about it (``tunesmith_base.json``)."""

    path: Path
    built_now: bool
    card: dict[str, Any]


def for_profile(profile: str, say: Callable[[str], None] = print, root: Path | None = None) -> Base:
    """The base a quickstart profile fine-tunes: the catalogue model for ``pretrained``, else the built one."""
    if profile == "pretrained":
        return pretrained(recipe()["pretrained"]["model"], say, root)
    return ensure(profile, say, root)


def pretrained(name: str, say: Callable[[str], None] = print, root: Path | None = None) -> Base:
    """The catalogue model ``name`` as a verified Hugging Face folder (converted from its GGUF the first time)."""
    from tunesmith.models import catalogue, ensure_converted

    entry = catalogue.get(name)
    if entry is None:
        raise KeyError(f"recipe.yaml: pretrained.model {name!r} is not in the model catalogue")
    result = ensure_converted(catalogue.locate(entry), say=say, root=root, expected_sha256=entry.sha256)
    config = json.loads((result.folder / "config.json").read_text("utf-8"))
    card = {
        "kind": "pretrained", "name": name, "description": entry.description, "licence": entry.licence,
        "source": result.source, "sha256": result.sha256, "quantization": result.quantization,
        "architecture": config["architectures"][0], "parameters": result.parameters,
        "num_hidden_layers": config["num_hidden_layers"], "hidden_size": config["hidden_size"],
        "vocab_size": config["vocab_size"], "conversion_seconds": result.seconds,
        "conversion_max_abs_diff": result.max_abs_diff,
    }
    return Base(result.folder, result.converted_now, card)


def ensure(profile: str, say: Callable[[str], None] = print, root: Path | None = None) -> Base:
    """The cached base for ``profile``, building it first when it is not there yet."""
    folder = ((root or cache_root()) / "base" / build_key(profile)).resolve()
    sweep(folder.parent)  # leftovers of killed builds
    if (folder / CARD).is_file():
        return Base(folder, False, json.loads((folder / CARD).read_text("utf-8")))
    with building(folder) as work:
        card = build(profile, work, say)
        model = work / "run" / "model"
        shutil.copy(work / "run" / "metrics.jsonl", model / "pretraining_metrics.jsonl")
        (model / CARD).write_text(json.dumps(card, indent=2), "utf-8")
        if not publish(model, folder, CARD):  # another process finished the same build first: use theirs
            return Base(folder, False, json.loads((folder / CARD).read_text("utf-8")))
    return Base(folder, True, card)


def build(profile: str, work: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Tokenizer + random-init Llama in ``work/init``, pretrained by ``cpt`` into ``work/run``."""
    from tunesmith import train
    from tunesmith.config import config_from_dict

    t0 = time.perf_counter()
    spec, seed = recipe()["base"], recipe()["seed"]
    counts = spec["profiles"][profile]["corpus"]
    raw = corpus.documents(counts, seed)
    plain = [d if isinstance(d, str) else "\n".join(m["content"] for m in d) for d in raw]
    tokenizer = train_tokenizer(plain, spec["tokenizer"]["vocab_size"])
    docs = [d if isinstance(d, str) else tokenizer.apply_chat_template(d, tokenize=False) for d in raw]
    with (work / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"text": doc}) + "\n" for doc in docs)
    init_model(tokenizer, spec["model"], seed, work / "init")
    say(f"base: corpus of {len(docs):,} project-written documents; pretraining with tunesmith's cpt stage")
    config = config_from_dict({
        **spec["pretrain"], "base_model": str(work / "init"), "seed": seed,
        "num_epochs": spec["profiles"][profile]["epochs"], "output_dir": str(work / "run"),
        "datasets": [{"path": str(work / "corpus.jsonl"), "type": "text"}],
    })
    result = train.run(config, overwrite=True, quiet=False, say=lambda line: None)
    run = json.loads((work / "run" / "run.json").read_text("utf-8"))
    return {
        "kind": "built", "profile": profile, "key": build_key(profile), "tunesmith": __version__,
        "parameters": result.total_params, "documents": len(docs),
        "tokens": run["tokenization"]["tokens"], "steps": result.global_step,
        "final_loss": result.train_loss, "build_seconds": round(time.perf_counter() - t0, 1),
        "architecture": "LlamaForCausalLM", **{k: v for k, v in spec["model"].items()},
        "vocab_size": len(tokenizer),
    }


def train_tokenizer(docs: list[str], vocab_size: int) -> Any:
    """A byte-level BPE trained on ``docs``, with ChatML specials and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tunesmith.tokenize.tokenizer import template_text

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(docs, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>",
                                   chat_template=template_text("chatml"), model_max_length=1024)


def init_model(tokenizer: Any, dims: dict[str, Any], seed: int, out: Path) -> None:
    """Save a randomly initialised Llama (seeded) with ``tokenizer`` to ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(vocab_size=len(tokenizer), tie_word_embeddings=True, bos_token_id=None,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **dims)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
