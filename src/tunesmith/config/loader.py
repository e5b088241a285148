"""Load a config from YAML (+ ``--set`` overrides) into the frozen :class:`Config`.

Errors name the file, line, YAML path and offending value, e.g.
``run.yaml:7: lora_r: must be > 0 (got -1)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tunesmith.config import llamafactory, migrate
from tunesmith.config.aliases import alias_table, canonical_key, canonicalize, did_you_mean, translate_value
from tunesmith.config.schema import Config, DatasetSpec
from tunesmith.config.yaml_lines import line_of
from tunesmith.errors import ConfigError

_DATASET_LISTS = ("datasets", "eval_datasets", "test_datasets")


def load_config(path: str | Path | None, overrides: list[str] | None = None, base: dict[str, Any] | None = None,
                tool: str | None = None) -> Config:
    """Read ``path`` (YAML), apply ``key=value`` overrides, validate.

    ``tool`` (axolotl | llamafactory | tunesmith) says whose conventions the file follows;
    by default it is detected from the keys (``config/migrate.py``)."""
    text, source = "", "<config>"
    raw: dict[str, Any] = dict(base or {})
    if path is not None:
        p = Path(path)
        source = str(path)
        if not p.is_file():
            raise ConfigError(f"{path}: config file not found")
        text = p.read_text("utf-8")
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config must be a mapping of key: value (got {type(loaded).__name__})")
        raw.update(loaded)
    return config_from_dict(raw, overrides, source=source, text=text, base_dir=Path(path).parent if path else None,
                            tool=tool)


def config_from_dict(
    raw: dict[str, Any],
    overrides: list[str] | None = None,
    source: str = "<config>",
    text: str = "",
    base_dir: Path | None = None,
    tool: str | None = None,
) -> Config:
    migrated = migrate.translate(raw, source, text, tool)
    data, origin = _canonical(migrated.data, source)
    origin.update(migrated.key_origin)
    _expand_llamafactory(data, base_dir)
    migrate.finish(data, migrated)
    set_paths: set[str] = set()
    for item in overrides or []:
        set_paths.add(_apply_override(data, item))
    try:
        return migrate.attach(Config.model_validate(data), migrated, set_paths)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source, text, origin, set_paths)) from None


def _canonical(raw: dict[str, Any], source: str) -> tuple[dict[str, Any], dict[str, str]]:
    data, origin = canonicalize(raw, "top", where=f"{source}: ")
    for key in _DATASET_LISTS:
        if isinstance(data.get(key), list):
            items = []
            for i, item in enumerate(data[key]):
                if isinstance(item, str):
                    item = {"path": item}
                if isinstance(item, dict):
                    item, sub = canonicalize(item, "dataset", where=f"{source}: {key}[{i}].")
                    origin.update({f"{key}[{i}].{c}": f"{key}[{i}].{o}" for c, o in sub.items() if c != o})
                items.append(item)
            data[key] = items
    return data, origin


def _apply_override(data: dict[str, Any], item: str) -> str:
    if "=" not in item:
        raise ConfigError(f"--set {item}: expected key=value")
    key, _, value_text = item.partition("=")
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else ""
    except yaml.YAMLError:
        value = value_text
    parts = key.strip().split(".")
    parts[0] = canonical_key(parts[0])
    value = translate_value(key.split(".")[0], value) if len(parts) == 1 else value
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        node = _child(node, part, parts[i + 1], key)
    last = parts[-1]
    if isinstance(node, list):
        node[_index(last, node, key)] = value
    else:
        node[last] = value
    return ".".join(parts)


def _child(node: Any, part: str, next_part: str, key: str) -> Any:
    if isinstance(node, list):
        return node[_index(part, node, key)]
    if not isinstance(node, dict):
        raise ConfigError(f"--set {key}: '{part}' is not a mapping")
    if part not in node or node[part] is None:
        node[part] = [] if next_part.isdigit() else {}
    return node[part]


def _index(part: str, node: list[Any], key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {key}: '{part}' is not an index of a list of {len(node)}")
    return int(part)


def _expand_llamafactory(data: dict[str, Any], base_dir: Path | None) -> None:
    if "dataset" not in data:
        return
    if "datasets" in data:
        raise ConfigError("datasets: set twice, as 'datasets' and LLaMA-Factory's 'dataset' (keep one)")
    dataset_dir = data.pop("dataset_dir", "data")
    if base_dir is not None and not Path(dataset_dir).is_absolute() and not Path(dataset_dir).exists():
        dataset_dir = str(base_dir / dataset_dir)
    data["datasets"] = llamafactory.dataset_specs(data.pop("dataset"), dataset_dir, data.get("method"))
    if "eval_dataset" in data:
        data["eval_datasets"] = llamafactory.dataset_specs(data.pop("eval_dataset"), dataset_dir, data.get("method"))


def _format_errors(
    exc: ValidationError, source: str, text: str, origin: dict[str, str], set_paths: set[str]
) -> str:
    seen: dict[str, list[str]] = {}
    lines: dict[str, int | None] = {}
    for err in exc.errors():
        loc = [p for p in err["loc"] if isinstance(p, int) or _is_field_name(p)]
        path = _path_str(loc)
        shown = origin.get(path, path)
        msg = _message(err, loc)
        if msg not in seen.setdefault(shown, []):
            seen[shown].append(msg)
        lines[shown] = None if path in set_paths else line_of(text, _original_loc(loc, origin))
    out = []
    for shown, msgs in sorted(seen.items(), key=lambda kv: lines.get(kv[0]) or 0):
        where = f"--set {shown}" if shown in set_paths else shown or "(config)"
        prefix = f"{source}:{lines[shown]}: " if lines.get(shown) else f"{source}: "
        out.append(f"{prefix}{where}: {' or '.join(msgs)}")
    return "\n".join(out)


def _original_loc(loc: list[Any], origin: dict[str, str]) -> list[Any]:
    """Map a canonical error location back to the key names the user wrote."""
    out: list[Any] = []
    for i, part in enumerate(loc):
        name = origin.get(_path_str(loc[: i + 1]))
        out.append(name.rsplit(".", 1)[-1] if isinstance(name, str) else part)
    return out


def _is_field_name(part: Any) -> bool:
    return isinstance(part, str) and "[" not in part and part not in ("str", "bool", "int", "float")


def _path_str(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(err: dict[str, Any], loc: list[Any]) -> str:
    kind, ctx, value = err["type"], err.get("ctx", {}), err.get("input")
    got = f" (got {value!r})" if kind != "missing" else ""
    if kind == "extra_forbidden":
        return "unknown key" + did_you_mean(str(loc[-1]), _known_keys(loc))
    if kind == "missing":
        return "required"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()))
        return f"must be {op} {bound}{got}"
    if kind == "literal_error":
        options = [o.strip(" '") for o in str(ctx.get("expected", "")).replace(" or ", ", ").split(",")]
        return f"must be one of {', '.join(options)}{got}" + did_you_mean(str(value), options)
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s){got}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    simple = {
        "int_parsing": "must be an integer", "int_type": "must be an integer",
        "int_from_float": "must be a whole number", "float_parsing": "must be a number",
        "float_type": "must be a number", "bool_parsing": "must be true or false",
        "bool_type": "must be true or false", "string_type": "must be a string",
        "list_type": "must be a list", "dict_type": "must be a mapping",
        "model_type": "must be a mapping", "model_attributes_type": "must be a mapping",
    }
    return simple.get(kind, err["msg"]) + got


def _known_keys(loc: list[Any]) -> list[str]:
    model: type[BaseModel] = Config
    level = "top"
    for part in loc[:-1]:
        if isinstance(part, str):
            field = model.model_fields.get(part)
            if part in _DATASET_LISTS:
                model, level = DatasetSpec, "dataset"
            elif field is not None and isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                model, level = field.annotation, "none"
    return list(model.model_fields) + list(alias_table().get(level, {}))


def dump_yaml(config: Config) -> str:
    """The resolved config as YAML (canonical keys, every default filled in)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
