"""``sequence_len`` against the model's context window, and RoPE scaling from the config.

A model attends over at most ``max_position_embeddings`` positions it was trained on; rows
longer than that get positions it never saw (garbage attention, loss that looks fine at first).
With RoPE scaling (the model's own, or ``rope_scaling`` in the config: linear / dynamic / yarn /
llama3 with a ``factor``) the window is that many times longer. ``check`` refuses a
``sequence_len`` beyond the window before anything is loaded; ``length_warning`` flags data whose
p99 row length (from the audit) is beyond it (those rows are truncated or dropped); the window
and the scaling in effect are recorded in run.json (``context``) and the configured scaling in the
saved model's config.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunesmith.config import Config
from tunesmith.errors import ConfigError

_SCALED = ("linear", "dynamic", "yarn", "llama3", "longrope")


@dataclass(frozen=True)
class Context:
    max_positions: int | None  # the model's max_position_embeddings (None: the model does not say)
    rope_type: str  # in effect after the config's rope_scaling
    factor: float  # RoPE scaling factor in effect (1.0: none)
    scaled_by: str  # "none", "model" or "config"

    @property
    def limit(self) -> int | None:
        """Positions the model can use: max_position_embeddings, times the factor of a configured scaling, or
        of the model's own linear / dynamic / yarn scaling (``models.positions``: as serve and vLLM read it)."""
        from tunesmith.models.positions import SCALED_BY_FACTOR

        if self.max_positions is None:
            return None
        scaled = self.scaled_by == "config" or (self.scaled_by == "model" and self.rope_type in SCALED_BY_FACTOR)
        return int(self.max_positions * self.factor) if scaled else self.max_positions

    def record(self, warning: str | None = None) -> dict[str, Any]:
        out = {"max_position_embeddings": self.max_positions, "rope_type": self.rope_type, "factor": self.factor,
               "scaled_by": self.scaled_by, "limit": self.limit}
        return {**out, "warning": warning} if warning else out


def model_config(base_model: str, say: Any = None) -> Any | None:
    """The base model's transformers config, or None when it cannot be read here (a GGUF or catalogue
    base is converted first, announced through ``say``)."""
    from transformers import AutoConfig

    from tunesmith.models import resolve

    try:
        return AutoConfig.from_pretrained(resolve(base_model, say=say))
    except (OSError, ValueError, KeyError):
        return None


def of(config: Config, model_cfg: Any | None = None) -> Context:
    """The context window the run trains with."""
    from tunesmith.models.positions import positions, rope_of

    cfg = model_cfg if model_cfg is not None else model_config(config.base_model)
    stated = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    if config.rope_scaling is not None:
        return Context(stated, config.rope_scaling.type, float(config.rope_scaling.factor), "config")
    kind, factor, _ = rope_of(cfg)
    if kind in _SCALED:  # yarn: its original positions, which the factor scales
        found = positions(cfg)
        return Context(found.stated if found else stated, kind, factor, "model")
    return Context(stated, kind, 1.0, "none")


def fit_default_length(config: Config, say: Any) -> Config:
    """``config`` with ``sequence_len`` lowered to the model's context when the file does not set it
    and the default is longer (a set value beyond the context stays an error: ``check``)."""
    if "sequence_len" in config.model_fields_set:
        return config
    limit = of(config, model_config(config.base_model, say)).limit
    if limit is None or config.sequence_len <= limit:
        return config
    say(f"sequence_len: not set; the default {config.sequence_len} is longer than the model's context, so this run "
        f"uses {limit}")
    return config.model_copy(update={"sequence_len": limit})


def check(config: Config) -> Context:
    """Raise ConfigError (``sequence_len: ...``) when sequence_len exceeds the model's context window."""
    context = of(config)
    limit = context.limit
    if limit is None or config.sequence_len <= limit:
        return context
    factor = -(-config.sequence_len // context.max_positions)  # type: ignore[operator]
    if context.scaled_by == "config":
        fix = f"raise rope_scaling.factor to {factor} or lower sequence_len to {limit}"
        what = f"the model's context {context.max_positions} x rope_scaling.factor {context.factor:g} = {limit}"
    else:
        fix = (f"lower sequence_len to {limit}, or extend the context with rope_scaling: {{type: linear, factor: "
               f"{factor}}} (or yarn; long-context training needs long rows to adapt to it)")
        if context.scaled_by == "model" and limit != context.max_positions:
            what = (f"the model's context ({context.max_positions} positions x its {context.rope_type} RoPE factor "
                    f"{context.factor:g} = {limit})")
        else:
            what = f"the model's context (max_position_embeddings {limit}"
            what += f", {context.rope_type} RoPE scaling included)" if context.scaled_by == "model" else ", no RoPE scaling)"
    given = "sequence_len" in config.model_fields_set
    value = f"{config.sequence_len}" if given else f"not set, and its default {config.sequence_len}"
    raise ConfigError(f"sequence_len: {value} is more than {what}: positions beyond it were never trained; {fix}")


def length_warning(context: Context, audit_stats: dict[str, Any]) -> str | None:
    """A warning when the training rows' p99 token length (from the audit) is beyond the context window."""
    p99 = ((audit_stats.get("token_lengths") or {}).get("train") or {}).get("p99")
    if context.limit is None or p99 is None or p99 <= context.limit:
        return None
    return (f"the training rows' p99 length is {p99} tokens, beyond the model's context of {context.limit}: "
            "more than 1 % of the rows are truncated or dropped; shorten them or set rope_scaling")


def scaled_config(config: Config) -> Any | None:
    """The base model's config with the configured RoPE scaling, for ``from_pretrained(config=...)``."""
    if config.rope_scaling is None:
        return None
    cfg = model_config(config.base_model)
    if cfg is None:
        raise ConfigError(f"rope_scaling: cannot read the config of {config.base_model} to scale its RoPE")
    own = dict(getattr(cfg, "rope_parameters", None) or {})
    params = {"rope_theta": own.get("rope_theta", getattr(cfg, "rope_theta", 10_000.0)),
              "rope_type": config.rope_scaling.type, "factor": float(config.rope_scaling.factor)}
    if config.rope_scaling.type in ("yarn", "llama3"):
        params["original_max_position_embeddings"] = cfg.max_position_embeddings
    if config.rope_scaling.type == "llama3":
        params.update(low_freq_factor=1.0, high_freq_factor=4.0)
    cfg.rope_parameters = params
    return cfg
