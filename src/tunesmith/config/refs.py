"""What a reference string names: the one rule for "is this a Hugging Face Hub id" (models and
datasets alike), so every stage treats ``org/name`` the same way."""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def looks_like_hub_id(ref: str, file_suffixes: Collection[str] = ()) -> bool:
    """``org/name`` or ``name`` that is not an existing local path, nor a file name ending in one of
    ``file_suffixes`` (e.g. the data readers' ``.jsonl``, ``.csv``)."""
    if Path(ref).expanduser().exists():
        return False
    return bool(_HUB_ID.match(ref)) and Path(ref).suffix.lower() not in file_suffixes
