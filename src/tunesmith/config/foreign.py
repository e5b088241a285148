"""Other tools' key tables (``foreign/*.yaml``) and the small set of actions they use.

A table entry says what a key means in its tool and what tunesmith does with it: rename it,
set tunesmith keys from it, accept it with a notice, refuse it with what to do instead, look
its value up in a value table, ... (see ``foreign/README.md``). This module interprets one
entry for one written value; ``migrate.py`` walks a whole file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Callable

import yaml

from tunesmith.config.yaml_load import load_table
from tunesmith.errors import did_you_mean

TOOLS = {"axolotl": "Axolotl", "llamafactory": "LLaMA-Factory"}
ACTIONS = ("rename", "set", "notice", "refuse", "keep", "lookup", "map", "file_type", "datasets")


@cache
def table(name: str) -> dict[str, Any]:
    """``foreign/<name>.yaml``: common, axolotl, llamafactory or values."""
    text = resources.files("tunesmith.config").joinpath("foreign", f"{name}.yaml").read_text("utf-8")
    return load_table(text)


def entries(tool: str, level: str) -> dict[str, dict[str, Any]]:
    """Entries of ``tool`` at ``level`` (top | dataset), tool-specific ones over the common ones."""
    out = dict(table("common").get(level, {})) if level == "top" else {}
    if tool in TOOLS:
        out.update(table(tool).get(level, {}))
    return out


def all_renames(level: str) -> dict[str, dict[str, Any]]:
    """Every plain rename of every table: ``{name: {to, from, values, split_commas}}`` (for --set)."""
    out: dict[str, dict[str, Any]] = {}
    for name in ("common", *TOOLS):
        for key, entry in table(name).get(level, {}).items():
            if "rename" in entry and key != entry["rename"]:
                values = {k: v for k, v in entry.get("values", {}).items() if not isinstance(v, dict)}
                out[key] = {"to": entry["rename"], "from": table(name)["tool"], "values": values or None,
                            "split_commas": entry.get("split_commas", False)}
    return out


def value_key(value: Any) -> Any:
    """How a written value is matched against ``values:`` keys (lists as 'a,b')."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return value


def choose(entry: dict[str, Any], value: Any) -> dict[str, Any]:
    """The action for ``value``: its ``values:`` entry, else ``other:``, else the entry's own."""
    values = entry.get("values") or {}
    key = value_key(value)
    hit = next((v for k, v in values.items() if (k == key and type(k) is type(key)) or _same_text(k, key)), None)
    if isinstance(hit, dict):
        return hit
    if hit is not None:  # a plain value translation of a rename
        return {"rename": entry["rename"], "replace_value": hit}
    if "other" in entry:
        return entry["other"]
    own = {k: entry[k] for k in (*ACTIONS, "split_commas") if k in entry}
    if not own:  # only some values are known and this is not one of them
        known = ", ".join(show(k) for k in values)
        return {"refuse": f"tunesmith knows the values {known} for this key (got {show(value)})"}
    return own


def _same_text(a: Any, b: Any) -> bool:
    """YAML 1.1 reads unquoted no/yes as booleans; match 'no' with false and numbers loosely."""
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return False


@dataclass
class Outcome:
    """What one entry did: keys set (canonical path -> (value, replaces)), and a note or error."""

    sets: dict[str, tuple[Any, tuple[Any, ...]]] = field(default_factory=dict)
    applied: str | None = None
    notice: str | None = None
    error: str | None = None
    keep: bool = False
    push: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    top: dict[str, Any] = field(default_factory=dict)


def apply(action: dict[str, Any], key: str, value: Any, context: dict[str, Any]) -> Outcome:
    """Interpret one action for ``key: value`` (``context``: records kind, file paths, ...)."""
    kind = next((a for a in ACTIONS if a in action), None)
    if kind is None:
        return Outcome(error=f"{key}: no action in the key table (a bug in tunesmith's tables)")
    return _HANDLERS[kind](action, key, value, context)


def _rename(action: dict[str, Any], key: str, value: Any, context: dict[str, Any]) -> Outcome:
    if "replace_value" in action:
        value = action["replace_value"]
    elif action.get("split_commas") and isinstance(value, str):  # known single values ('all') matched in choose()
        value = [v.strip() for v in value.split(",") if v.strip()]
    target = action["rename"]
    same = target == key
    return Outcome(sets={target: (value, ())}, applied=None if same else f"{target}: {show(value)}")


def _set(action: dict[str, Any], key: str, value: Any, context: dict[str, Any]) -> Outcome:
    out = Outcome()
    for target, spec in action["set"].items():
        replaces: tuple[Any, ...] = ()
        if isinstance(spec, dict):
            replaces, spec = tuple(spec.get("replaces", ())), spec["value"]
        out.sets[target] = (value if spec == "$value" else spec, replaces)
    out.applied = ", ".join(f"{t}: {show(v)}" for t, (v, _) in out.sets.items())
    return out


def _notice(action: dict[str, Any], key: str, value: Any, context: dict[str, Any]) -> Outcome:
    return Outcome(notice=action["notice"])


def _refuse(action: dict[str, Any], key: str, value: Any, context: dict[str, Any]) -> Outcome:
    return Outcome(error=action["refuse"])


def _keep(action: dict[str, Any], key: str, value: Any, context: dict[str, Any]) -> Outcome:
    return Outcome(sets={key: (value, ())}, keep=True, applied=action["keep"])


def _map(action: dict[str, Any], key: str, value: Any, context: dict[str, Any]) -> Outcome:
    if not isinstance(value, dict):
        return Outcome(error=f"must be a mapping of {', '.join(action['map'])} (got {show(value)})")
    unknown = [k for k in value if k not in action["map"]]
    if unknown:
        return Outcome(error=f"tunesmith maps only {', '.join(action['map'])} (got {', '.join(map(str, unknown))})")
    sets = {action["map"][k]: (v, ()) for k, v in value.items() if v != k}
    applied = ", ".join(f"{action['map'][k]}: {v}" for k, v in value.items()) or None
    return Outcome(sets=sets, applied=applied)


def _file_type(action: dict[str, Any], key: str, value: Any, context: dict[str, Any]) -> Outcome:
    suffixes = action["file_type"].get(value)
    if suffixes is None:
        return Outcome(error=f"unknown file type {value!r} (one of {', '.join(action['file_type'])})")
    wrong = [p for p in context.get("files", []) if "." in p.rsplit("/", 1)[-1]
             and not p.lower().endswith(tuple(suffixes))]
    if wrong:
        return Outcome(error=f"{value} files end with {' or '.join(suffixes)}, but {wrong[0]} does not; "
                             "tunesmith reads the file type from the file name")
    return Outcome(notice=f"{value} files: tunesmith reads the file type from the file name ({', '.join(suffixes)})")


def _datasets(action: dict[str, Any], key: str, value: Any, context: dict[str, Any]) -> Outcome:
    return Outcome(push={action["datasets"]: value}, applied=f"{action['datasets']}: {value} on every dataset")


def _lookup(action: dict[str, Any], key: str, value: Any, context: dict[str, Any]) -> Outcome:
    return _LOOKUPS[action["lookup"]](action["lookup"], key, value, context)


def _template(name: str, key: str, value: Any, context: dict[str, Any]) -> Outcome:
    known = table("values")[name]
    if isinstance(value, str) and value.startswith("tokenizer_default_fallback_"):
        fallback = value[len("tokenizer_default_fallback_"):]
        return Outcome(sets={"chat_template": ("tokenizer_default", ())}, applied="chat_template: tokenizer_default",
                       notice=f"Axolotl falls back to {fallback} when the tokenizer has no template; tunesmith "
                              f"stops with an error then (set chat_template: {fallback} to use it)")
    entry = known.get(value)
    if entry is None:
        if value == "tokenizer_default" or str(value).endswith(".jinja") or key == "chat_template":
            return Outcome(sets={"chat_template": (value, ())})
        tip = did_you_mean(value, known)
        return Outcome(error=f"unknown template name {value!r}{tip}; known: {', '.join(known)}; or set "
                             "chat_template to tokenizer_default, a tunesmith built-in name or a .jinja file")
    if "refuse" in entry:
        return Outcome(error=entry["refuse"])
    applied = f"chat_template: {entry['chat_template']}" + (f" ({entry['note']})" if entry.get("note") else "")
    return Outcome(sets={"chat_template": (entry["chat_template"], ())}, applied=applied)


def _dataset_type(name: str, key: str, value: Any, context: dict[str, Any]) -> Outcome:
    values = table("values")
    records = context.get("records", "sft")
    entry = values[name].get(value) if isinstance(value, str) else None
    top: dict[str, Any] = {}
    if entry is None and isinstance(value, str) and "." in value:
        template, strategy = value.split(".", 1)
        per_kind = values["strategies"].get(strategy) if template in values["strategy_templates"] else None
        if per_kind is not None:
            entry = per_kind.get(records) or {"refuse": f"{strategy} rows are for {', '.join(per_kind)} methods, "
                                                       f"but this method trains on {records} rows"}
            top = {"chat_template": values["strategy_templates"][template]}
    if entry is None:
        if value in context.get("native_types", ()):
            return Outcome(sets={"type": (value, ())})
        return Outcome(error=f"{value!r} is an Axolotl prompt strategy tunesmith does not know; set type to one of "
                             f"{', '.join(context.get('native_types', ()))} and map your columns with field_*")
    if "refuse" in entry:
        return Outcome(error=entry["refuse"])
    top = {**entry.get("top", {}), **top}
    sets = {"type": (entry["type"], ()), **{f: (v, ()) for f, v in entry.get("fields", {}).items()}}
    parts = [f"type: {entry['type']}", *(f"{f}: {v}" for f, v in entry.get("fields", {}).items())]
    parts += [f"{k}: {v}" + (f" (the strategy writes {v} tokens)" if k == "chat_template" else "")
              for k, v in top.items()]
    note = f" ({entry['note']})" if entry.get("note") else ""
    return Outcome(sets=sets, top=top, applied=", ".join(parts) + note)


def show(value: Any) -> str:
    """A value as one line of YAML (for notes and comments)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


_HANDLERS: dict[str, Callable[[dict[str, Any], str, Any, dict[str, Any]], Outcome]] = {
    "rename": _rename, "set": _set, "notice": _notice, "refuse": _refuse, "keep": _keep,
    "lookup": _lookup, "map": _map, "file_type": _file_type, "datasets": _datasets,
}
_LOOKUPS: dict[str, Callable[[str, str, Any, dict[str, Any]], Outcome]] = {
    "llamafactory_templates": _template, "axolotl_chat_templates": _template, "axolotl_dataset_types": _dataset_type,
}
