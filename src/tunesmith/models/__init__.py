"""Where base models come from: local folders and hub ids as they are, GGUF files converted once into
Hugging Face folders (verified by comparing logits), and the built-in catalogue of named bases.

Below every stage that loads a model (imports flow config/errors <- models <- stages <- cli).
"""

from tunesmith.models.cache import cache_root
from tunesmith.models.catalogue import CatalogueError
from tunesmith.models.gguf_file import GGUFError
from tunesmith.models.gguf_import import ImportResult, convert
from tunesmith.models.resolve import ensure_converted, gguf_source, portable_ref, resolve

__all__ = ["CatalogueError", "GGUFError", "ImportResult", "cache_root", "convert", "ensure_converted", "gguf_source",
           "portable_ref", "resolve"]
