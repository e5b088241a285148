"""``tunesmith export RUN|DIR --format hf|gguf|ollama|vllm``: write a deployable model and check it read back."""

from __future__ import annotations

from pathlib import Path

import typer


def export(
    source: Path = typer.Argument(..., metavar="RUN|DIR", help="A run directory, quickstart folder or model folder."),
    format_: str = typer.Option(..., "--format", help="hf (merged safetensors folder), gguf (llama.cpp), "
                                                      "ollama (GGUF + Modelfile), vllm (hf + chat template + "
                                                      "launch script)."),
    quant: str | None = typer.Option(None, "--quant", help="gguf/ollama: f16 (default), q8_0, q4_k_m."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: RUN/export/<format>[-<quant>])."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
    name: str | None = typer.Option(None, "--name", help="Model name (GGUF general.name, `ollama create NAME`)."),
) -> None:
    """Write the trained model as FORMAT, read it back, and fail unless it behaves like the trained model:
    logits on probe prompts, the rendered multi-turn prompt, the stop tokens and the tokenizer."""
    from transformers.utils import logging as hf_logging

    from tunesmith import export as stage

    hf_logging.disable_progress_bar()
    result = stage.run(stage.ExportOptions(source, format_, quant, out, overwrite, name))
    typer.echo(f"exported: {result.out_dir} ({result.format}{f' {result.quant}' if result.quant else ''}; "
               f"{', '.join(result.manifest.get('files', []))})")
    for check in result.checks:
        typer.echo(f"  {'ok    ' if check.passed else 'FAILED'} {check.name}: {check.detail}")
    typer.echo(f"report: {result.out_dir / 'export.json'}")
    stage.raise_if_failed(result)
    if result.command:
        typer.echo(f"next: {result.command}")
