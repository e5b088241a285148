"""Audit thresholds and size guidelines, read from ``guidelines.yaml`` beside this module."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from tunesmith.config.yaml_load import load_table

GUIDELINES_FILE = Path(__file__).with_name("guidelines.yaml")


@cache
def load_guidelines() -> dict[str, Any]:
    """The thresholds of every check (a mapping per check name)."""
    data: dict[str, Any] = load_table(GUIDELINES_FILE.read_text("utf-8"))
    return data
