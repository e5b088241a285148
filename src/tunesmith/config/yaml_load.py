"""Read a YAML config file: one-line errors (``file:line:column: problem``), duplicate keys refused.

PyYAML silently keeps the last of two equal keys (a run trained with the second of two
``learning_rate`` values) and reports syntax errors as a multi-line dump; this module turns
both into a single :class:`ConfigError` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tunesmith.errors import ConfigError

_MERGE_TAG = "tag:yaml.org,2002:merge"
_TABLE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's C parser when PyYAML was built with it
_HINTS = {
    "found character '\\t' that cannot start any token": "YAML indentation must use spaces, not tabs",
    "mapping values are not allowed here": "a value is indented wrongly, or a ':' in a value needs quotes",
    "could not find expected ':'": "a line is missing its ':' or a quote is left open",
}


class _DuplicateKey(yaml.MarkedYAMLError):
    pass


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key set twice in one mapping (``<<`` merges excepted)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = key_node.value
            if key in first:
                line = first[key].start_mark.line + 1
                raise _DuplicateKey(
                    problem=f"{key}: set twice (first on line {line}); YAML would silently keep the second "
                    "value: keep one",
                    problem_mark=key_node.start_mark,
                )
            first[key] = key_node
        return super().construct_mapping(node, deep=deep)


def load_table(text: str) -> Any:
    """A data table shipped inside tunesmith (catalogues, key tables): parsed by libyaml's C
    parser when PyYAML has it — the same documents as ``yaml.safe_load``, ~10x faster (the key
    tables alone took ~0.3 s of every ``train`` start). User files go through ``parse_yaml``."""
    return yaml.load(text, Loader=_TABLE_LOADER)  # noqa: S506 - a SafeLoader (C or Python)


def parse_yaml(text: str, source: str) -> Any:
    """The YAML document in ``text``; errors are one line naming ``source:line:column``."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(_one_line(exc, source)) from None
    except yaml.YAMLError as exc:  # errors without a position
        raise ConfigError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from None


def read_yaml(path: str | Path) -> tuple[Any, str]:
    """(document, text) of a YAML file; a missing, unreadable or non-UTF-8 file is a ConfigError."""
    p = Path(path)
    if not p.is_file():
        what = "is a folder, not a config file" if p.is_dir() else "config file not found"
        raise ConfigError(f"{path}: {what}")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{path}:{line}:{column}: not valid UTF-8 (byte 0x{data[exc.start]:02x}); save the config as UTF-8"
        ) from None
    return parse_yaml(text, str(path)), text


def _one_line(exc: yaml.MarkedYAMLError, source: str) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    if isinstance(exc, _DuplicateKey):
        return f"{where}: {exc.problem}"
    problem = " ".join(str(exc.problem or exc.context or "syntax error").split())
    text = f"{where}: not valid YAML: {problem}"
    if exc.context and exc.problem and exc.context_mark is not None and exc.context_mark.line != mark.line:
        text += f" ({' '.join(exc.context.split())} on line {exc.context_mark.line + 1})"
    hint = _HINTS.get(problem)
    return text + (f" ({hint})" if hint else "")
