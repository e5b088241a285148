"""Loading a pretrained causal LM (or a one-score reward model) from any reference tunesmith
accepts: a folder, hub id, GGUF file or catalogue name (``resolve``); an adapter folder is merged
into its base. Used by every stage that loads weights (train, infer, merge, export)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# the file beside a saved model that records what inference needs to reproduce training
MODEL_INFO = "tunesmith_model.json"


def load_pretrained(path: str, kwargs: dict[str, Any], kind: str = "causal_lm") -> Any:
    """A causal LM (or a one-score sequence classifier) from a folder, hub id, GGUF file or catalogue
    name (``tunesmith.models.resolve``); an adapter folder is merged into its base."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from tunesmith.models.resolve import resolve

    path = resolve(path)

    if kind == "reward":
        kwargs = {**kwargs, "num_labels": 1}
    if (Path(path) / "adapter_config.json").is_file():
        from peft import AutoPeftModelForCausalLM

        # an SFT adapter as base (e.g. DPO on top of SFT): merge it into the base weights
        merged = AutoPeftModelForCausalLM.from_pretrained(path, **{k: v for k, v in kwargs.items() if k != "num_labels"})
        merged = merged.merge_and_unload()
        if kind != "reward":
            return merged
        return _reward_from(merged, kwargs)
    cls = AutoModelForSequenceClassification if kind == "reward" else AutoModelForCausalLM
    return cls.from_pretrained(path, **kwargs)


def _reward_from(causal: Any, kwargs: dict[str, Any]) -> Any:
    """A reward model whose body is a (merged) causal LM's: saved to a temp folder and reloaded."""
    import tempfile

    from transformers import AutoModelForSequenceClassification

    with tempfile.TemporaryDirectory() as tmp:
        causal.save_pretrained(tmp)
        return AutoModelForSequenceClassification.from_pretrained(tmp, **kwargs)
