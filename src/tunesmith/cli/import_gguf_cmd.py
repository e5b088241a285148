"""``tunesmith import-gguf FILE --out DIR``: convert a GGUF into a verified Hugging Face model folder."""

from __future__ import annotations

from pathlib import Path

import typer


def import_gguf(
    file: Path = typer.Argument(..., metavar="FILE", help="The .gguf file (llama.cpp format)."),
    out: Path = typer.Option(..., "--out", help="The model folder to create (must not exist or be empty)."),
) -> None:
    """Convert FILE into a normal Hugging Face folder (safetensors, tokenizer.json, chat template, generation
    config stopping at the template's end-of-turn tokens), then reload it and fail unless its logits equal the
    GGUF-loaded model's. (`base_model: FILE.gguf` does the same once, into the cache.)"""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # transformers' load report (weights missing or misshapen) would precede tunesmith's own one-sentence
    # error, which names the same weights; the conversion is verified by its own checks
    hf_logging.set_verbosity_error()
    from tunesmith.models import convert

    result = convert(file, out, say=typer.echo)
    quant = ", ".join(f"{name} x{count}" for name, count in result.quantization.items())
    typer.echo(f"model folder: {result.folder}")
    typer.echo(f"{result.architecture}, {result.parameters:,} parameters, tensors {quant}; {result.seconds:.1f} s")
    typer.echo(f"check: max |logit diff| {result.max_abs_diff:.2e} on {result.prompts} prompts "
               f"(tolerance {result.tolerance:g}): passed")
