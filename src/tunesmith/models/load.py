"""Loading a pretrained causal LM (or a one-score reward model) from any reference tunesmith
accepts: a folder, hub id, GGUF file or catalogue name (``resolve``); an adapter folder is merged
into its base. Used by every stage that loads weights (train, infer, merge, export)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError

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
    model, info = cls.from_pretrained(path, **kwargs, output_loading_info=True)
    check_complete(model, info, path, new_head=kind == "reward")
    return model


class IncompleteCheckpointError(TunesmithError):
    """The checkpoint lacks weights the model needs (transformers would start them from random values)."""


def check_complete(model: Any, info: dict[str, Any], path: str, new_head: bool = False) -> None:
    """Refuse a model some of whose weights were not in the checkpoint: transformers initialises them
    randomly and only logs a report. ``new_head``: a reward model's score head is new by design, so only
    the body (``base_model_prefix``) must be complete."""
    missing = sorted(map(str, info["missing_keys"]))
    if new_head:
        body = f"{model.base_model_prefix}."
        missing = [k for k in missing if k.startswith(body)]
    if not missing:
        return
    shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    raise IncompleteCheckpointError(
        f"{path}: the checkpoint lacks weights a {type(model).__name__} needs ({shown}), which would start as random "
        "values; the folder is incomplete (a missing shard?) or its config.json names another architecture")


def _reward_from(causal: Any, kwargs: dict[str, Any]) -> Any:
    """A reward model whose body is a (merged) causal LM's: saved to a temp folder and reloaded."""
    import tempfile

    from transformers import AutoModelForSequenceClassification

    with tempfile.TemporaryDirectory() as tmp:
        causal.save_pretrained(tmp)
        return AutoModelForSequenceClassification.from_pretrained(tmp, **kwargs)
