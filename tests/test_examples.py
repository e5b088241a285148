"""Every shipped example config validates, and the data it names exists and ingests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith.config import load_config
from tunesmith.data import ingest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(ROOT.glob("examples/**/*.yaml"))


def test_every_method_and_adapter_has_an_example():
    names = {p.stem for p in CONFIGS}
    assert {"sft-lora", "sft-full", "qlora", "dora", "prompt-tuning", "cpt", "dpo", "kto", "orpo", "reward-model",
            "distill"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_example_config_is_valid_and_its_data_ingests(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config(path)
    result = ingest(list(cfg.datasets), method=cfg.method)
    assert result.records and not result.errors
