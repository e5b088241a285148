"""Convert a GGUF file into a normal Hugging Face model folder, and prove the conversion exact.

transformers loads a GGUF (``from_pretrained(dir, gguf_file=...)``: dequantized weights, a
tokenizer rebuilt from the GGUF vocabulary, the chat template from its metadata) but refuses to
``save_pretrained`` such a model ("quantized with gguf and is not serializable"). The model is
therefore re-materialised as a plain one (built from its config, the state dict loaded strictly)
and saved as safetensors with its tokenizer, chat template and a generation config whose
``eos_token_id`` lists the template's end-of-turn tokens. The folder is then reloaded from disk
and its logits compared with the GGUF-loaded model's on a few prompts (the tokenizers must also
agree); the largest absolute difference is reported and must stay under ``TOLERANCE``.

The folder is built in a hidden sibling and renamed into place only after the check passed, so a
killed or failed conversion never leaves anything that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunesmith import __version__
from tunesmith.models.cache import building, publish
from tunesmith.models.gguf_file import GGUFError, check, read_header
from tunesmith.models.load import gaps, shown

INFO = "tunesmith_gguf.json"
# both sides run the same dequantized float32 weights, so anything above rounding noise is a defect
TOLERANCE = 1e-4
PROBES = (
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Order #4471 shipped on 2024-05-01; it cost $1,200.50. Summarise."}],
    "The quick brown fox jumps over the lazy dog.",
    "def add(a, b):\n    return a + b\n",
)


@dataclass(frozen=True)
class ImportResult:
    """A converted model folder and the facts of its conversion (``tunesmith_gguf.json``)."""

    folder: Path
    source: str
    sha256: str
    architecture: str
    quantization: dict[str, int]
    parameters: int
    max_abs_diff: float
    prompts: int
    tolerance: float
    seconds: float
    converted_now: bool = True

    @classmethod
    def read(cls, folder: Path) -> ImportResult:
        info = json.loads((folder / INFO).read_text("utf-8"))
        fields = {k: info[k] for k in cls.__dataclass_fields__ if k not in ("folder", "converted_now")}
        return cls(folder=folder, converted_now=False, **fields)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "folder": str(self.folder)}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def convert(source: Path, out: Path, say: Callable[[str], None] = print, sha256: str | None = None) -> ImportResult:
    """Convert the GGUF ``source`` into the model folder ``out`` (which must not exist yet) and verify it."""
    t0 = time.perf_counter()
    source = source.expanduser().resolve()
    header = read_header(source)
    check(header)
    if out.exists() and not out.is_dir():
        raise GGUFError(f"{out}: is a file, not a folder; choose another --out")
    if out.exists() and any(out.iterdir()):
        raise GGUFError(f"{out}: already exists and is not empty; choose another --out or remove it")
    if out.exists():
        out.rmdir()
    sha256 = sha256 or file_sha256(source)
    with building(out) as work:
        say(f"loading {source.name} with transformers' GGUF loader (dequantizing {header.type_names()})")
        reference, tokenizer = load_gguf(source, say)
        _refuse_non_finite(reference, source)
        target = work / "model"
        save_plain(reference, tokenizer, target, source)
        diff, prompts = verify(reference, tokenizer, target, source)
        if diff > TOLERANCE:
            raise GGUFError(f"{source}: the converted model's logits differ from the GGUF-loaded model's by up to "
                            f"{diff:.3g} (> {TOLERANCE:g}) on {prompts} prompts; nothing was saved. Please report it "
                            "with the file's name; meanwhile use the model's original Hugging Face checkpoint")
        result = ImportResult(out, str(source), sha256, header.architecture, header.type_names(),
                              sum(p.numel() for p in reference.parameters()), diff, prompts, TOLERANCE,
                              round(time.perf_counter() - t0, 1))
        files = {f.name: f.stat().st_size for f in sorted(target.iterdir()) if f.is_file()}
        info = {**result.to_dict(), "tunesmith": __version__, **_versions(), "files": files}
        (target / INFO).write_text(json.dumps(info, indent=2), "utf-8")
        if not publish(target, out, INFO):
            return ImportResult.read(out)
    return result


def load_gguf(source: Path, say: Callable[[str], None] = print) -> tuple[Any, Any]:
    """The model (float32, eval mode) and tokenizer exactly as transformers loads them from the GGUF.

    Every weight the model class needs must come from the file: transformers fills a missing one with
    random values (and only logs it), and the logit check, which compares against this very model,
    could not tell. GGUF tensors the model does not use are named."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(source.parent), source.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model, info = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                           output_loading_info=True, ignore_mismatched_sizes=True)
    except (OSError, ValueError, KeyError, NotImplementedError, RuntimeError) as exc:
        raise GGUFError(f"{source}: transformers could not load this GGUF ({_why(exc)}); use the model's original "
                        "Hugging Face checkpoint instead") from None
    found = gaps(model, info)
    if found:
        raise GGUFError(f"{source}: the file lacks weights a {type(model).__name__} needs, or has them in another "
                        f"shape ({shown(found)}); it is incomplete, or not the '{model.config.model_type}' model its "
                        "metadata says: download or convert it again, or use the model's original Hugging Face "
                        "checkpoint")
    if info["unexpected_keys"]:
        say(f"warning: {source.name}: tensors the {type(model).__name__} does not use were left out: "
            f"{', '.join(sorted(info['unexpected_keys'])[:4])}")
    return model.eval(), tokenizer


def _refuse_non_finite(model: Any, source: Path) -> None:
    """A weight holding NaN or infinity (a damaged file, a broken quantization) makes every logit NaN, and
    NaN compares as no difference at all: the logit check cannot catch it, so the weights are checked."""
    import torch

    bad = [name for name, tensor in model.state_dict().items() if not bool(torch.isfinite(tensor).all())]
    if bad:
        raise GGUFError(f"{source}: weights hold NaN or infinite values ({shown(bad)}); the file is damaged: "
                        "download or convert it again")


def _why(exc: BaseException) -> str:
    """The first line of a loader error, in words (a bare KeyError names only the key)."""
    if isinstance(exc, KeyError) and exc.args:
        return f"entry {exc.args[0]!r} is missing or unknown"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def save_plain(model: Any, tokenizer: Any, out: Path, source: Path) -> None:
    """Save ``model`` (GGUF-loaded from ``source``, not serializable as such) as a plain safetensors model folder."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = model.state_dict()
    result = plain.load_state_dict(state, strict=False)
    tied = {k for k in result.missing_keys if _is_tied(plain, k)}
    if set(result.missing_keys) - tied or result.unexpected_keys:
        raise GGUFError(f"{source}: converting: weights do not match the {type(plain).__name__} layout "
                        f"(missing {sorted(set(result.missing_keys) - tied)[:5]}, unexpected {result.unexpected_keys[:5]})")
    plain.generation_config = copy.deepcopy(model.generation_config)
    # the ids training stops on (tokenize's rule; imported here, when a conversion runs, because
    # tokenize itself resolves GGUF references through this package)
    from tunesmith.tokenize import end_of_turn_ids

    eot = end_of_turn_ids(tokenizer)
    plain.generation_config.eos_token_id = eot if len(eot) > 1 else (eot[0] if eot else None)
    if tokenizer.pad_token_id is not None:
        plain.generation_config.pad_token_id = tokenizer.pad_token_id
    out.mkdir(parents=True)
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if tokenizer.chat_template:
        (out / "chat_template.jinja").write_text(tokenizer.chat_template, "utf-8")


def _is_tied(model: Any, key: str) -> bool:
    """A missing key that is the tied output projection (it shares the embedding's storage)."""
    out = model.get_output_embeddings()
    return bool(model.config.tie_word_embeddings and out is not None and key.startswith("lm_head")
                and out.weight is model.get_input_embeddings().weight)


def verify(reference: Any, tokenizer: Any, folder: Path, source: Path | None = None) -> tuple[float, int]:
    """Reload ``folder`` from disk; (max |logit diff| against ``reference``, prompts compared).

    The reloaded tokenizer must encode every probe exactly as ``tokenizer`` does.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    saved_tok = AutoTokenizer.from_pretrained(str(folder))
    saved = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    diff = 0.0
    for probe in PROBES:
        ids = _encode(tokenizer, probe)
        again = _encode(saved_tok, probe)
        if ids != again:
            raise GGUFError(f"{source or folder}: the saved tokenizer encodes {probe!r} differently from the GGUF's "
                            f"({again[:8]}... vs {ids[:8]}...); nothing was saved")
        with torch.inference_mode():
            expected = reference(input_ids=torch.tensor([ids])).logits
            actual = saved(input_ids=torch.tensor([ids])).logits
        diff = max(diff, float((actual - expected).abs().max()))
    return diff, len(PROBES)


def _encode(tokenizer: Any, probe: Any) -> list[int]:
    if isinstance(probe, str) or not tokenizer.chat_template:
        text = probe if isinstance(probe, str) else probe[-1]["content"]
        return list(tokenizer(text)["input_ids"])
    text = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"transformers": version("transformers"), "gguf": version("gguf")}
