"""Load a config from YAML (+ ``--set`` overrides) into the frozen :class:`Config`.

Errors name the file, line, YAML path and offending value, e.g.
``run.yaml:7: lora_r: must be > 0 (got -1)``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError

from tunesmith.config import llamafactory, migrate
from tunesmith.config.aliases import (
    KeyProblem, alias_table, canonical_key, canonicalize, translate_value,
)
from tunesmith.config.schema import EVAL_TASK_TAGS, Config, DatasetSpec
from tunesmith.config.yaml_lines import line_of
from tunesmith.config.yaml_load import read_yaml
from tunesmith.errors import ConfigError, did_you_mean

_DATASET_LISTS = ("datasets", "eval_datasets", "test_datasets")
_KEYED_MESSAGE = re.compile(r"^([A-Za-z_][\w.\[\]]*): (.+)$", re.S)
M = TypeVar("M", bound=BaseModel)
_NESTED_KEYED = ("distributed",)  # sections whose own checks name their key (issue 20)


def load_config(path: str | Path | None, overrides: list[str] | None = None, base: dict[str, Any] | None = None,
                tool: str | None = None) -> Config:
    """Read ``path`` (YAML), apply ``key=value`` overrides, validate.

    ``tool`` (axolotl | llamafactory | tunesmith) says whose conventions the file follows;
    by default it is detected from the keys (``config/migrate.py``)."""
    text, source = "", "<config>"
    raw: dict[str, Any] = dict(base or {})
    if path is not None:
        source = str(path)
        loaded, text = read_yaml(path)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            kind = "a list" if isinstance(loaded, list) else f"a {type(loaded).__name__}"
            raise ConfigError(f"{path}:1: a config must be a mapping of key: value lines (got {kind})")
        raw.update(loaded)
    return config_from_dict(raw, overrides, source=source, text=text, base_dir=Path(path).parent if path else None,
                            tool=tool)


def load_yaml_model(path: str | Path, model: type[M], what: str) -> M:
    """Read the YAML file ``path`` into ``model`` (another frozen schema of ``schema.py``, e.g. a
    gate config or a judge rubric); errors name the file, line, key path and value, as for configs."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: {what} file not found")
    text = p.read_text("utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a {what} must be a mapping of key: value (got {type(raw).__name__})")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(path), text, {}, set(), root=model)) from None


def config_from_dict(
    raw: dict[str, Any],
    overrides: list[str] | None = None,
    source: str = "<config>",
    text: str = "",
    base_dir: Path | None = None,
    tool: str | None = None,
) -> Config:
    migrated = migrate.translate(raw, source, text, tool)
    try:
        data, origin = _canonical(migrated.data)
    except KeyProblem as exc:
        line = line_of(text, _loc_of(exc.path))
        raise ConfigError(f"{source}:{line}: {exc}" if line else f"{source}: {exc}") from None
    origin.update(migrated.key_origin)
    _expand_llamafactory(data, base_dir)
    migrate.finish(data, migrated)
    set_paths: set[str] = set()
    for item in overrides or []:
        set_paths.add(_apply_override(data, item))
    try:
        config = migrate.attach(Config.model_validate(data), migrated, set_paths)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source, text, origin, set_paths)) from None
    config._origin = (source, text, origin, set_paths)
    return config


def located(config: Config, key: str, message: str) -> ConfigError:
    """A ConfigError for ``key`` (a canonical path such as ``lora_target_modules``) of a loaded config,
    naming the file and line it was set on (or ``--set``), as load-time errors do."""
    origin = config._origin
    if origin is None:
        return ConfigError(f"{key}: {message}")
    source, text, names, set_paths = origin
    shown = names.get(key, key)
    if key in set_paths:
        return ConfigError(f"{source}: --set {shown}: {message}")
    loc = _loc_of(shown)
    line = line_of(text, loc) or (_first_line(text) if text else None)
    prefix = f"{source}:{line}: " if line else f"{source}: "
    return ConfigError(f"{prefix}{shown}: {message}")


def _loc_of(path: str) -> list[Any]:
    """``datasets[0].type`` -> ["datasets", 0, "type"]."""
    out: list[Any] = []
    for part in path.split("."):
        name, _, rest = part.partition("[")
        if name:
            out.append(name)
        for index in re.findall(r"(\d+)\]", "[" + rest if rest else ""):
            out.append(int(index))
    return out


def _first_line(text: str) -> int:
    """The first line holding a key (a missing top-level key is reported there)."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith(("#", "---")):
            return number
    return 1


def _canonical(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    data, origin = canonicalize(raw, "top")
    for key in _DATASET_LISTS:
        if isinstance(data.get(key), list):
            items = []
            for i, item in enumerate(data[key]):
                if isinstance(item, str):
                    item = {"path": item}
                if isinstance(item, dict):
                    item, sub = canonicalize(item, "dataset", where=f"{key}[{i}].")
                    origin.update({f"{key}[{i}].{c}": f"{key}[{i}].{o}" for c, o in sub.items() if c != o})
                items.append(item)
            data[key] = items
    return data, origin


def _apply_override(data: dict[str, Any], item: str) -> str:
    if "=" not in item or not item.partition("=")[0].strip():
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
    return _path_str([int(p) if p.isdigit() else p for p in parts])  # datasets[0].type, as errors name it


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
    exc: ValidationError, source: str, text: str, origin: dict[str, str], set_paths: set[str],
    root: type[BaseModel] = Config,
) -> str:
    seen: dict[str, list[str]] = {}
    lines: dict[str, int | None] = {}
    from_set: set[str] = set()
    for err in exc.errors():
        loc = [p for p in err["loc"] if isinstance(p, int) or _is_field_name(p)]
        msg = _message(err, loc, root)
        keyed = _KEYED_MESSAGE.match(msg) if err["type"] == "value_error" else None
        if keyed and not loc:  # a model-level check naming its key ("save_steps: must be ...")
            loc, msg = _loc_of(keyed.group(1)), keyed.group(2)
        elif keyed and loc and loc[-1] in _NESTED_KEYED:  # the same inside a section: distributed.zero_stage
            loc, msg = [*loc, *_loc_of(keyed.group(1))], keyed.group(2)
        path = _path_str(loc)
        shown = origin.get(path, path)
        if msg not in seen.setdefault(shown, []):
            seen[shown].append(msg)
        if _from_set(path, set_paths):
            from_set.add(shown)
        line = None if shown in from_set else line_of(text, _original_loc(loc, origin))
        lines[shown] = line or (_first_line(text) if text and shown not in from_set else None)
    out = []
    for shown, msgs in sorted(seen.items(), key=lambda kv: lines.get(kv[0]) or 0):
        where = f"--set {shown}" if shown in from_set else shown or "(config)"
        prefix = f"{source}:{lines[shown]}: " if lines.get(shown) else f"{source}: "
        out.append(f"{prefix}{where}: {' or '.join(msgs)}")
    return "\n".join(out)


def _from_set(path: str, set_paths: set[str]) -> bool:
    """Whether the value at ``path`` came from ``--set``: set there, or inside a value --set wrote
    (``--set datasets.0=3``), or --set wrote inside it (``--set learning_rate.x=1``)."""
    return any(p == path or p.startswith((f"{path}.", f"{path}[")) or path.startswith((f"{p}.", f"{p}["))
               for p in set_paths if path)


def _original_loc(loc: list[Any], origin: dict[str, str]) -> list[Any]:
    """Map a canonical error location back to the key names the user wrote."""
    out: list[Any] = []
    for i, part in enumerate(loc):
        name = origin.get(_path_str(loc[: i + 1]))
        out.append(name.rsplit(".", 1)[-1] if isinstance(name, str) else part)
    return out


def _is_field_name(part: Any) -> bool:
    return (isinstance(part, str) and "[" not in part and part not in ("str", "bool", "int", "float")
            and part not in EVAL_TASK_TAGS)


def _path_str(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(err: dict[str, Any], loc: list[Any], root: type[BaseModel] = Config) -> str:
    kind, ctx, value = err["type"], err.get("ctx", {}), err.get("input")
    got = f" (got {value!r})" if kind != "missing" else ""
    if kind == "extra_forbidden":
        other_tool = _other_tool(loc) if root is Config else ""
        return "unknown key" + (other_tool or did_you_mean(str(loc[-1]), _known_keys(loc, root)))
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
        "float_type": "must be a number", "finite_number": "must be a finite number", "bool_parsing": "must be true or false",
        "bool_type": "must be true or false", "string_type": "must be a string",
        "list_type": "must be a list", "dict_type": "must be a mapping",
        "model_type": "must be a mapping", "model_attributes_type": "must be a mapping",
    }
    return simple.get(kind, err["msg"]) + got


def _known_keys(loc: list[Any], root: type[BaseModel] = Config) -> list[str]:
    model: type[BaseModel] = root
    level = "top" if root is Config else "none"
    for part in loc[:-1]:
        if isinstance(part, str):
            field = model.model_fields.get(part)
            if part in _DATASET_LISTS:
                model, level = DatasetSpec, "dataset"
            elif field is not None and (inner := _model_in(field.annotation)) is not None:
                model, level = inner, "none"
    return list(model.model_fields) + list(alias_table().get(level, {})) + _foreign_keys(level)


def _other_tool(loc: list[Any]) -> str:
    """`` (an Axolotl key: ...)`` for a key of another tool's table than the one the file was read as
    (``--from llamafactory`` on an Axolotl file), instead of a hint at the very same name."""
    from tunesmith.config import foreign

    level = "top" if len(loc) == 1 else "dataset" if len(loc) == 3 and loc[0] in _DATASET_LISTS else None
    tools = [t for t in foreign.TOOLS if level and str(loc[-1]) in foreign.table(t).get(level, {})]
    if not tools:
        return ""
    names = " or ".join(f"{foreign.TOOLS[t]} (--from {t})" for t in tools)
    return f" (a key of {names}: this file was not read as that tool's config)"


def _foreign_keys(level: str) -> list[str]:
    """Every key the Axolotl and LLaMA-Factory tables know at ``level`` (top | dataset): a typo of one of them
    ('finetuning_typ') is hinted at the key meant, not at a tunesmith key that happens to be close."""
    from tunesmith.config import foreign

    if level not in ("top", "dataset"):
        return []
    return sorted({key for tool in foreign.TOOLS for key in foreign.entries(tool, level)})


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The first schema model inside an annotation (``X``, ``X | None``, ``list[X]``, a union of models)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for arg in get_args(annotation) if (m := _model_in(arg)) is not None), None)


def dump_yaml(config: Config) -> str:
    """The resolved config as YAML (canonical keys, every default filled in)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
