"""The native tunesmith config equivalent to a loaded config (``tunesmith import``)."""

from __future__ import annotations

import yaml

from tunesmith.config.annotate import annotated_yaml, notes_block
from tunesmith.config.loader import config_from_dict
from tunesmith.config.schema import Config
from tunesmith.errors import TunesmithError


def native_config(config: Config, source: str) -> str:
    """YAML that loads (as a tunesmith file) to the same config; checked before it is returned."""
    body = annotated_yaml(config, full=False)
    again = config_from_dict(yaml.safe_load(body) or {}, source="<import>", tool="tunesmith")
    want = config.model_dump(exclude={"source_tool"})
    got = again.model_dump(exclude={"source_tool"})
    if want != got:
        diff = sorted(k for k in want if want[k] != got.get(k))
        raise TunesmithError(f"import: the native config would differ in {', '.join(diff)} (a tunesmith bug)")
    tool = config.source_tool
    head = [f"# tunesmith config translated from {source} ({tool}) by `tunesmith import`.",
            "# Values translated from another key or defaulted by the source tool say so in a comment;",
            "# keys that do not apply here are listed at the end. Values not shown are tunesmith's defaults."]
    return "\n".join(head) + "\n" + body + notes_block(config, source)
