"""Configuration: one frozen pydantic schema, YAML loading, aliases, overrides."""

from tunesmith.config.loader import config_from_dict, load_config
from tunesmith.config.schema import Config, DatasetSpec, EvalTaskSpec

__all__ = ["Config", "DatasetSpec", "EvalTaskSpec", "config_from_dict", "load_config"]
