"""Find the line of a YAML path (``datasets[0].type``) in the original text."""

from __future__ import annotations

from typing import Any

import yaml


def line_of(text: str, loc: list[Any]) -> int | None:
    """1-based line of the deepest key/item of ``loc`` present in ``text``."""
    if not text:
        return None
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    best: int | None = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                return best
            best, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            best = node.start_mark.line + 1
        else:
            return best
    return best
