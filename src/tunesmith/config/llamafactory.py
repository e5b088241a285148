"""LLaMA-Factory's ``dataset: name1,name2`` + ``dataset_dir`` (with ``dataset_info.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError

_COLUMNS = {
    "prompt": "field_instruction",
    "query": "field_input",
    "response": "field_output",
    "history": "field_history",
    "messages": "field_messages",
    "system": "field_system",
    "tools": "field_tools",
    "chosen": "field_chosen",
    "rejected": "field_rejected",
    "kto_tag": "field_label",
}
_TAGS = ("role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag")


def _records(method: str | None) -> str | None:
    from tunesmith.config.methods import methods

    spec = methods().get(method) if isinstance(method, str) else None
    return spec.records if spec else None


def dataset_specs(names: str | list[str], dataset_dir: str, method: str | None) -> list[dict[str, Any]]:
    """Turn LLaMA-Factory dataset names into tunesmith dataset entries."""
    info_path = Path(dataset_dir) / "dataset_info.json"
    if not info_path.is_file():
        raise ConfigError(f"dataset: LLaMA-Factory dataset names need {info_path} (set dataset_dir)")
    info = json.loads(info_path.read_text("utf-8"))
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    return [_one(name, info, Path(dataset_dir), method) for name in names]


def _one(name: str, info: dict[str, Any], root: Path, method: str | None) -> dict[str, Any]:
    if name not in info:
        raise ConfigError(f"dataset: '{name}' is not in {root / 'dataset_info.json'}")
    entry = info[name]
    if "file_name" in entry:
        spec: dict[str, Any] = {"path": str(root / entry["file_name"])}
    elif "hf_hub_url" in entry:
        spec = {"path": entry["hf_hub_url"]}
    else:
        raise ConfigError(f"dataset: '{name}' has neither file_name nor hf_hub_url")
    if entry.get("subset"):
        spec["name"] = entry["subset"]
    if entry.get("split"):
        spec["split"] = entry["split"]
    columns = entry.get("columns", {})
    media = [c for c in ("images", "videos", "audios") if c in columns]
    if media:
        raise ConfigError(f"dataset: '{name}' ({root / 'dataset_info.json'}) has {' and '.join(media)} "
                          f"(columns.{media[0]}): tunesmith "
                          "trains text models only, and its <image>-style placeholders would be trained as text; use a "
                          "text-only dataset")
    if entry.get("num_samples") is not None:
        raise ConfigError(f"dataset: '{name}' ({root / 'dataset_info.json'}) sets num_samples "
                          f"({entry['num_samples']}), which LLaMA-Factory draws at random; tunesmith does not draw "
                          "them: remove it, or set max_samples (the first N rows) or sample_ratio in the config")
    fmt = entry.get("formatting", "alpaca")
    # No explicit formatting: LLaMA-Factory's default is alpaca, but pretraining entries
    # (c4_demo, wiki_demo: only a "prompt" -> "text" column) are text; let detection decide.
    explicit = "formatting" in entry
    if _records(method) == "text":
        spec["type"] = "text"
        spec["field_text"] = columns.get("prompt", "text")
        return spec
    if entry.get("ranking"):
        spec["type"] = "preference"
    elif "kto_tag" in columns:
        spec["type"] = "kto"
    else:
        spec["type"] = fmt if explicit else "auto"
    for col, field in _COLUMNS.items():
        if col in columns:
            spec[field] = columns[col]
    if spec["type"] == "preference" and fmt == "alpaca" and "prompt" in columns:
        spec["field_prompt"] = spec.pop("field_instruction")
    for tag in _TAGS:
        if tag in entry.get("tags", {}):
            spec[tag] = entry["tags"][tag]
    return spec
