"""Checks that need the model or the training libraries, run before any data is loaded.

Load-time validation (``config/``) cannot know the model's module names or build the
transformers arguments without importing transformers; these checks do, in seconds, so a typo
in ``lora_target_modules`` or a setting transformers rejects fails before data loading and
tokenization, with the config file and line, instead of as a traceback minutes later.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from tunesmith.config import Config
from tunesmith.config.adapters import adapter_spec, adapters
from tunesmith.config.methods import method_spec
from tunesmith.errors import did_you_mean
from tunesmith.config.loader import located
from tunesmith.errors import ConfigError
from tunesmith.config.yaml_load import load_table

_KEYED = re.compile(r"^([a-z_]+): (.+)$", re.S)


def run(config: Config) -> Any:
    """Every check; returns the tokenizer (with the run's chat template) for reuse."""
    from tunesmith import tokenize

    with _located(config):
        tokenizer = tokenize.load_tokenizer(config.base_model, config.chat_template, config.special_tokens)
        if method_spec(config.method).records != "text":  # conversations need a chat template
            tokenize.tokenizer.require_chat_template(tokenizer, config.chat_template)
        from tunesmith.train import context

        context.check(config)
        check_other_models(config, tokenizer)
    check_report_to(config)
    check_validation(config)
    check_adapter_settings(config)
    check_target_modules(config)
    with _located(config):
        check_training_arguments(config)
    return tokenizer


def check_other_models(config: Config, tokenizer: Any) -> None:
    """``teacher_model`` / ``ref_model`` before any data is read: an existing folder or a hub id, with the trained
    model's tokenizer (they were checked only after the data, the audit and the base weights had loaded, a
    missing folder with the hub's "Repo id" message)."""
    from tunesmith.config.refs import looks_like_hub_id
    from tunesmith.train.distill import check_shared_tokenizer

    for key in ("teacher_model", "ref_model"):
        ref = getattr(config, key)
        if not ref:
            continue
        if not Path(str(ref)).expanduser().exists() and not looks_like_hub_id(str(ref)):
            raise ConfigError(f"{key}: {ref}: no such folder (nor a hub id)")
        check_shared_tokenizer(tokenizer, str(ref), key)


class _located:
    """Turn a ``key: message`` ConfigError from a stage into one naming the config file and line."""

    def __init__(self, config: Config):
        self.config = config

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        if isinstance(exc, ConfigError) and config_key(str(exc)):
            key, message = config_key(str(exc))  # type: ignore[misc]
            raise located(self.config, key, message.splitlines()[0]) from None
        return False


def config_key(message: str) -> tuple[str, str] | None:
    match = _KEYED.match(message)
    if match and match.group(1) in Config.model_fields:
        return match.group(1), match.group(2)
    return None


@cache
def _integrations() -> dict[str, list[str]]:
    text = resources.files("tunesmith.train").joinpath("integrations.yaml").read_text("utf-8")
    return load_table(text)


def check_report_to(config: Config) -> None:
    """The reporting integration's package must be installed (transformers fails later otherwise)."""
    if config.report_to == "none":
        return
    modules = _integrations().get(config.report_to, [config.report_to])
    if not any(importlib.util.find_spec(m) is not None for m in modules):
        raise located(config, "report_to", f"{config.report_to} needs the '{modules[0]}' package: "
                      f"pip install {modules[0]} (or report_to: none; metrics.jsonl is always written)")


@cache
def _adapter_settings() -> dict[str, dict[str, Any]]:
    text = resources.files("tunesmith.train").joinpath("adapter_settings.yaml").read_text("utf-8")
    return load_table(text)


def check_adapter_settings(config: Config) -> None:
    """Settings the config writes for an adapter that does not read them (``adapter_settings.yaml``) are an error
    naming each key and the adapter (PEFT would train without them, without a word)."""
    spec = adapter_spec(config.adapter)
    unused: dict[str, list[str]] = {}  # key -> the adapters that use it
    for key, row in _adapter_settings().items():
        if spec.peft in row["used_by"] or key not in config.model_fields_set:
            continue
        value = getattr(config, key)  # a seeded default (a saved config.yaml writes every key) is not asked for
        if value not in (None, Config.model_fields[key].default) and not ("inert" in row and value == row["inert"]):
            unused[key] = [name for name, other in adapters().items() if other.peft in row["used_by"]]
    if not unused:
        return
    named = ", ".join(f"{key} (used by {'/'.join(users)})" for key, users in unused.items())
    them = "it" if len(unused) == 1 else "them"
    raise located(config, next(iter(unused)), f"adapter {config.adapter} ({spec.summary}) does not use {named}: "
                  f"remove {them}, or choose an adapter that uses {them}")


@lru_cache(maxsize=4)
def module_names(base_model: str) -> tuple[str, ...] | None:
    """Qualified module names of the base model, built on the meta device (no weights read);
    None when the architecture can't be read (the model load reports that later)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(base_model)
    adapter = path / "adapter_config.json"
    try:
        if adapter.is_file():
            import json

            base_model = json.loads(adapter.read_text("utf-8")).get("base_model_name_or_path") or base_model
        model_config = AutoConfig.from_pretrained(base_model)
        import torch

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(model_config)
    except (OSError, ValueError, KeyError):
        return None
    return tuple(name for name, _ in model.named_modules() if name)


def _linear_leaves(base_model: str) -> list[str]:
    from transformers import AutoConfig, AutoModelForCausalLM
    import torch

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base_model))
    leaves = [n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    return list(dict.fromkeys(leaves))


def check_target_modules(config: Config) -> None:
    """Every name in ``lora_target_modules`` / ``modules_to_save`` must match a module of the base
    (PEFT matches a name or a dotted suffix of one), with a did-you-mean against its layer names."""
    lora = adapter_spec(config.adapter).low_rank and isinstance(config.lora_target_modules, list)
    wanted = [("lora_target_modules", t) for t in (config.lora_target_modules if lora else [])]
    wanted += [("modules_to_save", t) for t in config.modules_to_save or []]
    if not wanted:
        return
    names = module_names(config.base_model)
    if names is None:
        return
    leaves = list(dict.fromkeys(n.rsplit(".", 1)[-1] for n in names))
    for key, target in wanted:
        if any(n == target or n.endswith("." + target) for n in names):
            continue
        try:
            linear = _linear_leaves(config.base_model)
        except (OSError, ValueError, KeyError):
            linear = leaves
        raise located(config, key, f"'{target}' is not a module of {config.base_model}"
                      f"{did_you_mean(target, linear) or did_you_mean(target, leaves)}; its linear layers are: "
                      f"{', '.join(linear)}")


# settings that act only on evaluation: without validation rows they would do nothing, without a word
_EVALUATION_KEYS = ("early_stopping_patience", "eval_steps", "evals_per_epoch")


def check_validation(config: Config, eval_rows: int | None = None, why: str | None = None) -> None:
    """``early_stopping_patience`` / ``eval_steps`` / ``evals_per_epoch`` need validation rows. Before the data
    (``eval_rows`` None) only ``val_set_size: 0`` without ``eval_datasets`` is known to leave none; after it
    (``eval_rows``: the validation rows the data step kept, ``why``: its reason for none), an unset
    ``val_set_size`` on a small training set (no default split) too. Checked before the weights load."""
    keys = [k for k in _EVALUATION_KEYS if getattr(config, k) is not None]
    if not keys or config.eval_datasets:
        return
    if eval_rows is None:
        if config.val_set_size != 0:
            return
        why = "val_set_size: 0"
    elif eval_rows:
        return
    raise located(config, keys[0], f"needs validation data and this run has none ({why or 'no validation rows'}): "
                  "set val_set_size (a fraction such as 0.1, or a row count) or give eval_datasets; or remove "
                  f"{' / '.join(keys)}")


_LAYER = re.compile(r"\.(?:layers|layer|h|blocks)\.(\d+)\.")  # a decoder layer's index in a module name


def modules_to_save_matches(config: Config) -> dict[str, list[str]]:
    """Each ``modules_to_save`` name -> the base model's modules PEFT trains and saves in full for it: PEFT
    matches every module whose qualified name ends with the name (``norm`` is also ``input_layernorm`` in every
    layer, ``peft_layers_to_transform`` or not). Empty without modules_to_save or a readable architecture."""
    names = module_names(config.base_model) if config.modules_to_save else None
    if not names:
        return {}
    return {target: [n for n in names if n.endswith(target)] for target in config.modules_to_save or []}


def modules_to_save_warnings(config: Config, matches: dict[str, list[str]]) -> list[str]:
    """A warning for each ``modules_to_save`` name that matches more than one module, listing them (none
    with ``lint_skip: [modules_to_save]``: the matches are still recorded in run.json)."""
    if "modules_to_save" in config.lint_skip:
        return []
    layers = set(config.peft_layers_to_transform or [])
    out = []
    for target, found in matches.items():
        if len(found) < 2:
            continue
        shown = ", ".join(found[:8]) + (f", ... ({len(found) - 8} more)" if len(found) > 8 else "")
        outside = [n for n in found if (m := _LAYER.search(f".{n}.")) and layers and int(m.group(1)) not in layers]
        where = (f"; {len(outside)} of them in layers outside peft_layers_to_transform {sorted(layers)}"
                 if outside else "")
        out.append(f"modules_to_save: '{target}' matches {len(found)} modules, each trained and saved in full "
                   f"(PEFT takes every module whose name ends with it): {shown}{where}; to train one, give its "
                   f"full name (e.g. {min(found, key=len)})")
    return out


def check_training_arguments(config: Config) -> None:
    """Build the transformers / TRL arguments once now: what they reject is a config error."""
    from tunesmith.train import trainers
    from tunesmith.config.defaults import resolve
    from tunesmith.models.precision import choose

    has_eval = bool(config.eval_datasets) or config.val_set_size != 0  # unset: the default split may apply
    resolved = resolve(config, 0)
    args = trainers.common_args(config, resolved, choose(config.bf16), "/nonexistent", has_eval,
                                bool(config.gradient_checkpointing))
    try:
        trainers.training_arguments(config, args, resolved)
    except (ValueError, TypeError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise located(config, _blamed_key(first), f"transformers rejects the training settings: {first}") from None


def _blamed_key(message: str) -> str:
    """The config key a transformers message is most likely about (for the line number)."""
    for key, words in (("lr_scheduler", "scheduler"), ("optimizer", "optim"), ("bf16", "bf16"),
                       ("bf16", "fp16"), ("eval_steps", "eval"), ("save_steps", "save"),
                       ("report_to", "report"), ("loss_type", "loss")):
        if words in message.lower():
            return key
    return "method"
