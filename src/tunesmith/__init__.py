"""tunesmith: base LLM + your data -> fine-tuned, evaluated, gated, served model."""

__version__ = "0.1.0"
