"""Audit thresholds and size guidelines, read from ``guidelines.yaml`` beside this module."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

GUIDELINES_FILE = Path(__file__).with_name("guidelines.yaml")


@cache
def load_guidelines() -> dict[str, Any]:
    """The thresholds of every check (a mapping per check name)."""
    with GUIDELINES_FILE.open(encoding="utf-8") as fh:
        data: dict[str, Any] = yaml.safe_load(fh)
    return data
