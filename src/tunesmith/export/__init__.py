"""export: write a trained model as a standalone Hugging Face folder, a GGUF (llama.cpp) or an
Ollama Modelfile + GGUF, and check what was written, read back, against the trained model
(logits, template parity, stop tokens, tokenizer) - ``run(ExportOptions) -> ExportResult``."""

from tunesmith.export.checks import Check
from tunesmith.export.exporters import EXPORTERS
from tunesmith.export.run import ExportCheckFailed, ExportOptions, ExportResult, raise_if_failed, run, verify

__all__ = ["EXPORTERS", "Check", "ExportCheckFailed", "ExportOptions", "ExportResult", "raise_if_failed", "run",
           "verify"]
