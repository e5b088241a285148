"""infer: load a trained artifact (full model, adapter or merged) and generate with its template.

Shared by evaluation, the merge check, ``tunesmith chat`` and serving, so every one of them
renders prompts exactly as training did.
"""

from tunesmith.infer.generate import Generation, generate, generate_details, prompt_ids
from tunesmith.infer.load import Loaded, info, load, resolve_model_dir, stop_ids

__all__ = ["Generation", "Loaded", "generate", "generate_details", "info", "load", "prompt_ids", "resolve_model_dir", "stop_ids"]
