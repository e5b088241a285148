"""Loading a pretrained causal LM (or a one-score reward model) from any reference tunesmith
accepts: a folder, hub id, GGUF file or catalogue name (``resolve``); an adapter folder is merged
into its base. Used by every stage that loads weights (train, infer, merge, export, serve).

Every load is checked: weights a checkpoint lacks, or holds in another shape, are refused by name
(``check_complete``), and so are adapter tensors an adapter file lacks (``load_adapter``, which also
takes a refused adapter out of the model again); transformers and PEFT would start those from random
values and only log it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError

# the file beside a saved model that records what inference needs to reproduce training
MODEL_INFO = "tunesmith_model.json"


def load_pretrained(path: str, kwargs: dict[str, Any], kind: str = "causal_lm",
                    overrides: dict[str, Any] | None = None) -> Any:
    """A causal LM (or a one-score sequence classifier) from a folder, hub id, GGUF file or catalogue
    name (``tunesmith.models.resolve``); an adapter folder is merged into its base. ``overrides``: config
    values to load it with (an adapter's ``base_overrides``: the RoPE scaling it was trained with)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from tunesmith.models.resolve import resolve

    path = resolve(path)

    if kind == "reward":
        kwargs = {**kwargs, "num_labels": 1}
    if (Path(path) / "adapter_config.json").is_file():
        # an SFT adapter as base (e.g. DPO on top of SFT): merge it into the base weights
        merged = _merged_adapter(path, {k: v for k, v in kwargs.items() if k != "num_labels"}, overrides)
        return merged if kind != "reward" else _reward_from(merged, kwargs)
    if overrides and "config" not in kwargs:  # a config passed whole takes no config keys (num_labels) beside it
        kwargs = {**{k: v for k, v in kwargs.items() if k != "num_labels"}, "config": _config_with(path, overrides, kwargs)}
    cls = AutoModelForSequenceClassification if kind == "reward" else AutoModelForCausalLM
    # misshapen weights are reported (by ``check_complete``, naming them) instead of raised as a bare RuntimeError
    model, info = cls.from_pretrained(path, **kwargs, output_loading_info=True, ignore_mismatched_sizes=True)
    check_complete(model, info, path, new_head=kind == "reward")
    return model


class IncompleteCheckpointError(TunesmithError):
    """The checkpoint lacks weights the model needs (transformers would start them from random values)."""


def check_complete(model: Any, info: dict[str, Any], path: str, new_head: bool = False) -> None:
    """Refuse a model some of whose weights were not in the checkpoint, or not in the shape the architecture
    needs: transformers initialises those randomly and only logs a report. ``new_head``: a reward model's
    score head is new by design."""
    found = gaps(model, info, new_head)
    if found:
        raise IncompleteCheckpointError(
            f"{path}: the checkpoint lacks weights a {type(model).__name__} needs, or has them in another shape "
            f"({shown(found)}), which would start as random values; the folder is incomplete (a missing shard?) "
            "or its config.json describes another model")


def gaps(model: Any, info: dict[str, Any], new_head: bool = False) -> list[str]:
    """The weights a load left random (``output_loading_info`` of ``from_pretrained``): missing ones by name,
    misshapen ones with both shapes; with ``new_head``, those of the head next to the body are expected."""
    found = [str(k) for k in info["missing_keys"]]
    found += [f"{k}: {'x'.join(map(str, theirs))} in the file vs {'x'.join(map(str, ours))} needed"
              for k, theirs, ours in info["mismatched_keys"]]
    if new_head:  # the modules beside the body, else the usual head names
        body = getattr(model, model.base_model_prefix, None)
        beside = [name for name, child in model.named_children() if child is not body] if body is not None else []
        heads = tuple(f"{name}." for name in beside)
        found = [k for k in found if not k.startswith(heads or ("score.", "classifier."))]
    return sorted(found)


def shown(items: list[str], limit: int = 4) -> str:
    """The first ``limit`` items, comma-separated, and how many more."""
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def base_overrides(adapter: str | Path) -> dict[str, Any]:
    """The config values an adapter's training set on its base (``base_config`` in tunesmith_model.json: the
    RoPE scaling of a run with ``rope_scaling``). Loaded without them, the base would compute other positions
    than the ones the adapter was trained with: every later stage loads the base with them."""
    import json

    path = Path(adapter) / MODEL_INFO
    info = json.loads(path.read_text("utf-8")) if path.is_file() else {}
    values = info.get("base_config") if isinstance(info, dict) else None
    return dict(values) if isinstance(values, dict) else {}


def _config_with(path: str, overrides: dict[str, Any], kwargs: dict[str, Any]) -> Any:
    """``path``'s config with ``overrides`` set (what ``from_pretrained(config=...)`` then builds)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, trust_remote_code=bool(kwargs.get("trust_remote_code")))
    for key, value in overrides.items():
        setattr(config, key, value)
    if "num_labels" in kwargs:
        config.num_labels = kwargs["num_labels"]
    return config


def _merged_adapter(path: str, kwargs: dict[str, Any], overrides: dict[str, Any] | None = None) -> Any:
    """The adapter in ``path`` merged into its base, the base loaded (and checked) like any other: the one
    tunesmith recorded beside the adapter, else the adapter_config's. When the adapter saved larger embeddings
    (tokens the fine-tune added), the base's grow to that size first."""
    import json

    folder = Path(path)
    info = json.loads((folder / MODEL_INFO).read_text("utf-8")) if (folder / MODEL_INFO).is_file() else {}
    base_ref = info.get("base_model") or json.loads((folder / "adapter_config.json").read_text("utf-8")).get(
        "base_model_name_or_path")
    if not base_ref:
        raise IncompleteCheckpointError(f"{folder / 'adapter_config.json'}: base_model_name_or_path is empty, so the "
                                        "adapter's base is unknown")
    check_base(folder, str(base_ref))
    base = load_pretrained(str(base_ref), kwargs, overrides={**base_overrides(folder), **(overrides or {})})
    embeddings = base.get_input_embeddings()
    name = next(n for n, m in base.named_modules() if m is embeddings)
    saved = [shape[0] for k, shape in _saved_shapes(folder).items() if k.endswith(f"{name}.weight")]
    if saved and saved[0] > embeddings.weight.shape[0]:  # tokens the fine-tune added, trained with the adapter
        base.resize_token_embeddings(saved[0])
    return load_adapter(base, path).merge_and_unload()


class BaseMismatchError(TunesmithError):
    """An adapter put on a base whose weights differ from the ones it was trained on."""


def check_base(adapter: str | Path, base: str | Path) -> None:
    """Refuse to put ``adapter`` on ``base`` when tunesmith recorded other base weights for it at training time.

    PEFT loads an adapter onto any base of the same shapes, and a merge check compares the merge with that same
    adapter-on-the-wrong-base, so nothing else notices: the merged, evaluated or served model would not be the
    one that was trained. Adapters saved without the record (older ones, other tools) and bases without local
    weight files (hub ids) are not checked."""
    import json

    from tunesmith.models.fingerprint import weights_fingerprint
    from tunesmith.models.resolve import resolve

    path = Path(adapter) / MODEL_INFO
    info = json.loads(path.read_text("utf-8")) if path.is_file() else {}
    recorded = info.get("base_weights")
    now = weights_fingerprint(resolve(str(base))) if recorded else None
    if now is None or now == recorded:
        return
    trained = info.get("base_model")
    raise BaseMismatchError(f"{adapter}: trained on other base weights than {base} holds (weights fingerprint "
                            f"{recorded[:12]} recorded, {now[:12]} there): merged, evaluated or served on it, it is "
                            "not the model that was trained; use the base it was trained on"
                            + (f" ({trained}, as it was then)" if trained and str(trained) != str(base) else
                               ", restored as it was then"))


def load_adapter(model: Any, folder: str | Path, adapter_name: str = "default", is_trainable: bool = False) -> Any:
    """What ``PeftModel.from_pretrained`` does (``load_adapter`` when ``model`` is a PEFT model already), refusing
    an adapter file that lacks tensors its config implies (PEFT only warns and keeps the random initialisation)
    or was trained on another base. A refused adapter leaves nothing behind: its layers are taken out of the
    model again (a server keeps serving the model as it was)."""
    from peft import PeftConfig, PeftModel
    from peft.auto import MODEL_TYPE_TO_PEFT_MODEL_MAPPING

    fresh = not isinstance(model, PeftModel)
    if fresh:
        config = PeftConfig.from_pretrained(str(folder))
        config.inference_mode = not is_trainable
        model = MODEL_TYPE_TO_PEFT_MODEL_MAPPING.get(config.task_type, PeftModel)(model, config, adapter_name)
    try:
        _load_checked(model, folder, adapter_name, is_trainable)
    except BaseException:
        _take_out(model, adapter_name, fresh)
        raise
    return model


def _load_checked(model: Any, folder: str | Path, adapter_name: str, is_trainable: bool) -> None:
    from peft.utils import get_peft_model_state_dict

    try:
        model.load_adapter(str(folder), adapter_name=adapter_name, is_trainable=is_trainable)
    except RuntimeError as exc:
        if "size mismatch" not in str(exc):
            raise
        raise _mismatch_error(folder, exc) from None
    expected = set(get_peft_model_state_dict(model, adapter_name=adapter_name))
    missing = sorted(expected - set(_saved_shapes(folder)))
    if missing:
        raise IncompleteCheckpointError(f"{folder}: the adapter file lacks tensors its adapter_config.json implies "
                                        f"({shown(missing)}), which would start as random values; save or copy the "
                                        "adapter again")


def _saved_shapes(folder: str | Path) -> dict[str, tuple[int, ...]]:
    """The adapter file's tensor names and shapes: from the safetensors header alone (PEFT has read the tensors
    already), else through PEFT's loader (pickled weights)."""
    from peft.utils import load_peft_weights
    from safetensors import safe_open

    file = Path(folder) / "adapter_model.safetensors"
    if file.is_file():
        with safe_open(str(file), framework="pt") as fh:
            return {key: tuple(fh.get_slice(key).get_shape()) for key in fh.keys()}
    return {key: tuple(t.shape) for key, t in load_peft_weights(str(folder)).items()}


def _take_out(model: Any, adapter_name: str, fresh: bool) -> None:
    """Undo a failed load: the base modules lose the layers just injected, or the adapter is deleted."""
    if fresh and not model.peft_config[adapter_name].is_prompt_learning:
        model.base_model.unload()  # the base model's modules as before (the wrapper itself is dropped)
    elif not fresh and adapter_name in model.peft_config:
        model.delete_adapter(adapter_name)


def _mismatch_error(folder: str | Path, exc: RuntimeError) -> IncompleteCheckpointError:
    line = next((l.strip() for l in str(exc).splitlines() if "size mismatch" in l), str(exc).splitlines()[0])
    return IncompleteCheckpointError(f"{folder}: the adapter's tensors do not fit its base model ({line.rstrip('.')}); "
                                     "was it trained on another base?")


def _reward_from(causal: Any, kwargs: dict[str, Any]) -> Any:
    """A reward model whose body is a (merged) causal LM's: saved to a temp folder and reloaded."""
    import tempfile

    from transformers import AutoModelForSequenceClassification

    with tempfile.TemporaryDirectory() as tmp:
        causal.save_pretrained(tmp)
        return AutoModelForSequenceClassification.from_pretrained(tmp, **kwargs)
