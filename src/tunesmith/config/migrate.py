"""Read a config written for Axolotl or LLaMA-Factory: every key of the file is applied
(translated to tunesmith's key), accepted with a notice that says why it does not apply here,
or refused with what tunesmith does instead; the tool's own defaults fill what the file leaves
out. The knowledge lives in ``foreign/*.yaml``; this module only walks a file through it.

The tool is detected from keys only it writes (``--from`` forces it). Nothing is dropped
silently: each key ends up in ``Config.notes`` and each translated or defaulted value in
``Config.origin(key)``, which ``tunesmith config`` and ``tunesmith import`` show.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from tunesmith.config import foreign
from tunesmith.config.methods import methods
from tunesmith.config.yaml_lines import line_of
from tunesmith.errors import ConfigError

DATASET_LISTS = ("datasets", "eval_datasets", "test_datasets")
SOURCES = ("tunesmith", *foreign.TOOLS)


@dataclass(frozen=True)
class Note:
    """What loading did with one key: applied, defaulted, ignored (not applicable) or empty."""

    path: str
    kind: str
    text: str
    line: int | None = None

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}: " if self.line else ""
        return f"{where}{self.path}: {self.text}"


@dataclass
class Migrated:
    """A file translated to tunesmith keys, with what happened to each key."""

    data: dict[str, Any]
    tool: str
    notes: list[Note] = field(default_factory=list)
    origins: dict[str, str] = field(default_factory=dict)
    key_origin: dict[str, str] = field(default_factory=dict)
    push: dict[str, Any] = field(default_factory=dict)


def native_keys(level: str) -> set[str]:
    from tunesmith.config.schema import Config, DatasetSpec

    return set((Config if level == "top" else DatasetSpec).model_fields)


def markers(raw: dict[str, Any]) -> dict[str, list[str]]:
    """Per tool, the keys of ``raw`` only that tool writes (not tunesmith keys, not common names)."""
    found: dict[str, list[str]] = {}
    for tool in foreign.TOOLS:
        top, ds = _own_keys(tool, "top"), _own_keys(tool, "dataset")
        keys = [k for k in raw if k in top]
        for name in DATASET_LISTS:
            for item in raw.get(name) or []:
                if isinstance(item, dict):
                    keys += [k for k in item if k in ds]
        if keys:
            found[tool] = list(dict.fromkeys(keys))
    return found


def _own_keys(tool: str, level: str) -> set[str]:
    """Keys only ``tool`` writes: in its table, not a tunesmith key, not another tool's or a common name."""
    others = set(foreign.table("common").get(level, {}))
    for other in foreign.TOOLS:
        if other != tool:
            others |= set(foreign.table(other).get(level, {}))
    return set(foreign.table(tool).get(level, {})) - others - native_keys(level)


def detect(raw: dict[str, Any], source: str = "<config>") -> str:
    """``axolotl``, ``llamafactory`` or ``tunesmith``, from the keys only one tool writes."""
    found = markers(raw)
    if len(found) > 1:
        parts = "; ".join(f"{foreign.TOOLS[t]} ({', '.join(keys[:4])})" for t, keys in found.items())
        raise ConfigError(f"{source}: the keys fit more than one tool: {parts}; pass --from axolotl|llamafactory")
    return next(iter(found), "tunesmith")


def translate(raw: dict[str, Any], source: str = "<config>", text: str = "", tool: str | None = None) -> Migrated:
    """The file's keys as tunesmith keys (plus the tool's defaults for what it leaves out)."""
    if tool is not None and tool not in SOURCES:
        raise ConfigError(f"--from: must be one of {', '.join(SOURCES)} (got {tool!r})")
    tool = tool or detect(raw, source)
    walk = _Walk(tool, source, text)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        walk.top_key(out, str(key), value)
    records = _records(out.get("method", "sft"))
    for name in DATASET_LISTS:
        if isinstance(out.get(name), list):
            out[name] = walk.dataset_list(name, out[name], records, out)
    if tool != "tunesmith":
        walk.defaults(out)
        out["source_tool"] = tool
        walk.migrated.origins["source_tool"] = f"detected from {foreign.TOOLS[tool]} keys"
    if walk.errors:
        raise ConfigError("\n".join(walk.errors))
    walk.migrated.data = out
    return walk.migrated


def finish(data: dict[str, Any], migrated: Migrated) -> None:
    """After LLaMA-Factory ``dataset:`` names are expanded: apply keys meant for every dataset."""
    if "dataset" in migrated.data and "datasets" in data:
        names = foreign.show(migrated.data["dataset"])
        migrated.origins["datasets"] = f"from dataset: {names} (LLaMA-Factory, via dataset_dir/dataset_info.json)"
    for key, value in migrated.push.items():
        for name in ("datasets", "eval_datasets"):
            for i, item in enumerate(data.get(name) or []):
                if isinstance(item, dict) and key not in item:
                    item[key] = value
                    migrated.origins[f"{name}[{i}].{key}"] = migrated.origins.get(key, "")


def attach(config: Any, migrated: Migrated | None, set_paths: set[str]) -> Any:
    """Give the validated config its notes and value origins (``--set`` wins over the file)."""
    if migrated is None:
        return config
    origins = {k: v for k, v in migrated.origins.items() if k not in set_paths}
    origins.update({p: "--set" for p in set_paths})
    config._origins = origins
    config._notes = tuple(migrated.notes)
    return config


def _records(method: Any) -> str:
    spec = methods().get(method) if isinstance(method, str) else None
    return spec.records if spec else "sft"


def _path_loc(path: str) -> list[Any]:
    """``datasets[0].type`` -> ``["datasets", 0, "type"]`` (for the line a key was written on)."""
    return [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]


class _Walk:
    """Walks one file through the key tables, collecting the result, notes and errors."""

    def __init__(self, tool: str, source: str, text: str):
        self.tool, self.source, self.text = tool, source, text
        self.name = foreign.TOOLS.get(tool, "tunesmith")
        self.foreign = tool != "tunesmith"
        self.migrated = Migrated(data={}, tool=tool)
        self.errors: list[str] = []
        self.replaceable: dict[str, tuple[Any, ...]] = {}

    def line(self, loc: list[Any]) -> int | None:
        return line_of(self.text, loc)

    def top_key(self, out: dict[str, Any], key: str, value: Any) -> None:
        entry = foreign.entries(self.tool, "top").get(key)
        self.key(out, out, entry, key, value, key, [key], {})

    def key(self, node: dict[str, Any], top: dict[str, Any], entry: dict[str, Any] | None, key: str, value: Any,
            path: str, loc: list[Any], context: dict[str, Any]) -> None:
        prefix = path[: -len(key)]
        if value is None and (self.foreign or entry is not None):
            self.note(path, "empty", "", loc)
            return
        if entry is None:
            self.put(node, key, value, path, (), prefix)
            return
        outcome = foreign.apply(foreign.choose(entry, value), key, value, context)
        where = f"{path}: {foreign.show(value)} ({self.name}: {entry.get('meaning', key)})"
        if outcome.error:
            self.errors.append(f"{self._at(loc)}{where} - {outcome.error}")
            return
        for target, (v, replaces) in outcome.sets.items():
            self.put(node, target, v, path, replaces, prefix)
            if not outcome.keep and (target != key or v != value):
                self.migrated.origins[prefix + target] = self.origin(path, value)
        for target, v in outcome.top.items():
            self.put(top, target, v, path, ())
            self.migrated.origins[target] = self.origin(path, value)
        self.migrated.push.update(outcome.push)
        for target in outcome.push:
            self.migrated.origins[target] = self.origin(path, value)
        identity = all(t == key and v == value for t, (v, _) in outcome.sets.items()) and not outcome.top
        if outcome.applied and not outcome.keep and not (identity and outcome.sets):
            self.note(path, "applied", f"{foreign.show(value)} -> {outcome.applied}", loc)
        if outcome.notice:
            self.note(path, "ignored", f"{foreign.show(value)} ({entry.get('meaning', key)}): {outcome.notice}", loc)

    def put(self, node: dict[str, Any], target: str, value: Any, origin: str, replaces: tuple[Any, ...],
            prefix: str = "") -> None:
        *parents, leaf = target.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        full = prefix + target
        if leaf in node and node[leaf] != value:
            if _replaces(replaces, node[leaf]):
                pass
            elif _replaces(self.replaceable.get(full, ()), value):
                return
            else:
                first = self.migrated.key_origin.get(full, full)
                self.errors.append(f"{self._at(_path_loc(origin))}{full}: set twice, as '{first}' and '{origin}' "
                                   "(they are the same setting; keep one)")
                return
        node[leaf] = value
        self.replaceable[full] = replaces
        self.migrated.key_origin[full] = origin

    def origin(self, path: str, value: Any) -> str:
        return f"from {path}: {foreign.show(value)} ({self.name})"

    def note(self, path: str, kind: str, text: str, loc: list[Any]) -> None:
        self.migrated.notes.append(Note(path, kind, text, self.line(loc)))

    def _at(self, loc: list[Any]) -> str:
        line = self.line(loc)
        return f"{self.source}:{line}: " if line else f"{self.source}: "

    def dataset_list(self, name: str, items: list[Any], records: str, top: dict[str, Any]) -> list[Any]:
        result: list[Any] = []
        entries = foreign.entries(self.tool, "dataset")
        context = {"records": records, "native_types": _native_types()}
        for i, item in enumerate(items):
            if isinstance(item, str):
                item = {"path": item}
            if not isinstance(item, dict):
                result.append(item)
                continue
            split = _split_data_files(item)
            if len(split) > 1 or split[0] is not item:
                files = foreign.show([one["path"] for one in split])
                self.note(f"{name}[{i}].data_files", "applied", f"-> one dataset per file: path {files}", [name, i])
            for one in split:
                out: dict[str, Any] = {}
                files = [str(one.get("path", "")), *_as_list(one.get("data_files"))]
                for key, value in one.items():
                    path = f"{name}[{len(result)}].{key}"
                    self.key(out, top, entries.get(str(key)), str(key), value, path, [name, i, key],
                             {**context, "files": files})
                result.append(out)
        return result

    def defaults(self, out: dict[str, Any]) -> None:
        for key, spec in foreign.table(self.tool).get("defaults", {}).items():
            if key in out or any(k in out for k in spec.get("unless", ())):
                continue
            if "adapters" in spec and out.get("adapter", "lora") not in spec["adapters"]:
                continue
            out[key] = spec["value"]
            self.migrated.origins[key] = f"{self.name} default: {spec['why']}"
            shown = foreign.show(spec["value"])
            self.migrated.notes.append(Note(key, "defaulted", f"{shown} ({self.name}: {spec['why']})"))


def _replaces(replaces: tuple[Any, ...], value: Any) -> bool:
    """Whether a table value with these ``replaces`` wins over ``value`` (``$list``: any list)."""
    return value in replaces or (isinstance(value, list) and "$list" in replaces)


def _split_data_files(item: dict[str, Any]) -> list[dict[str, Any]]:
    """Axolotl ``data_files`` without ``path``: one dataset entry per file."""
    files = _as_list(item.get("data_files"))
    if "path" in item or not files:
        return [item]
    rest = {k: v for k, v in item.items() if k != "data_files"}
    return [{"path": f, **copy.deepcopy(rest)} for f in files]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _native_types() -> tuple[str, ...]:
    from typing import get_args

    from tunesmith.config.schema import DataType

    return get_args(DataType)


def summary(config: Any, source: str) -> list[str]:
    """What train/config print about a file from another tool: defaults taken, keys not applicable."""
    notes = list(getattr(config, "notes", ()))
    if config.source_tool == "tunesmith" and not notes:
        return []
    name = foreign.TOOLS.get(config.source_tool, "tunesmith")
    applied = sum(n.kind == "applied" for n in notes)
    article = "an" if name[0] in "AEIOU" else "a"
    lines = [f"read as {article} {name} config: {applied} keys translated (tunesmith config {source} shows every value's origin)"]
    lines += [f"  {name} default: {n.path} = {n.text}" for n in notes if n.kind == "defaulted"]
    lines += [f"  not applicable: {n.render(source)}" for n in notes if n.kind == "ignored"]
    empty = [n.path for n in notes if n.kind == "empty"]
    if empty:
        lines.append(f"  empty in the file (not set): {', '.join(empty)}")
    return lines
