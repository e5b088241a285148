"""Dataset mixing: ``datasets[].weight`` / ``sample_ratio`` and ``mix_temperature`` in the data stage."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tunesmith.config import config_from_dict
from tunesmith.data import run
from tunesmith.errors import ConfigError


def _chat(path: Path, n: int, tag: str) -> str:
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"{tag} q{i}"},
                                                     {"role": "assistant", "content": f"a{i}"}]}) + "\n"
                            for i in range(n)))
    return str(path)


def _config(tmp_path, a: dict, b: dict, **over):
    datasets = [{"path": _chat(tmp_path / "a.jsonl", 30, "a"), **a}, {"path": _chat(tmp_path / "b.jsonl", 10, "b"), **b}]
    return config_from_dict({"base_model": "tiny", "datasets": datasets, "output_dir": str(tmp_path / "out"), **over})


def _per_file(records):
    return Counter(Path(r.source.file).name for r in records)


def test_no_mix_keeps_every_row_once(tmp_path):
    result = run(_config(tmp_path, {}, {}))
    assert _per_file(result.train) == {"a.jsonl": 30, "b.jsonl": 10} and result.mix == []


def test_weights_set_the_shares_and_small_sets_repeat(tmp_path):
    result = run(_config(tmp_path, {}, {"weight": 3}))
    # mass a = 30 x 1, b = 10 x 3: equal shares of the 40 rows
    assert _per_file(result.train) == {"a.jsonl": 20, "b.jsonl": 20}
    b_rows = Counter(r.source.row for r in result.train if r.source.file.endswith("b.jsonl"))
    assert set(b_rows.values()) == {2} and len(b_rows) == 10  # every row of b exactly twice
    a_rows = [r.source.row for r in result.train if r.source.file.endswith("a.jsonl")]
    assert len(set(a_rows)) == 20 and a_rows == sorted(a_rows)  # a sample without repeats, in file order
    assert [(m["rows"], m["used"], m["share"], m["weight"]) for m in result.mix] == [(30, 20, 0.5, None), (10, 20, 0.5, 3.0)]
    again = run(_config(tmp_path, {}, {"weight": 3}))
    assert [r.source.row for r in again.train] == [r.source.row for r in result.train]  # seeded


def test_temperature_flattens_the_natural_proportions(tmp_path):
    # T = 2: mass 30^0.5 = 5.477, 10^0.5 = 3.162 -> shares 0.634 / 0.366 of 40 = 25.4 / 14.6
    result = run(_config(tmp_path, {}, {}, mix_temperature=2))
    assert _per_file(result.train) == {"a.jsonl": 25, "b.jsonl": 15}


def test_sample_ratio_takes_a_fraction_or_repeats(tmp_path):
    result = run(_config(tmp_path, {"sample_ratio": 0.5}, {"sample_ratio": 2.5}))
    assert _per_file(result.train) == {"a.jsonl": 15, "b.jsonl": 25}
    b_rows = Counter(r.source.row for r in result.train if r.source.file.endswith("b.jsonl"))
    assert sorted(Counter(b_rows.values()).items()) == [(2, 5), (3, 5)]  # 2 copies each + 5 drawn once more


def test_validation_is_split_before_mixing(tmp_path):
    result = run(_config(tmp_path, {}, {"weight": 5}, val_set_size=0.25))
    train = {(r.source.file, r.source.row) for r in result.train}
    held = {(r.source.file, r.source.row) for r in result.eval}
    assert len(result.eval) == 10 and not train & held  # a repeated row never lands on both sides
    assert len(result.train) == 30


def test_bad_mix_values_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"datasets\[1\]\.weight"):
        _config(tmp_path, {}, {"weight": 0})
    with pytest.raises(ConfigError, match="mix_temperature"):
        _config(tmp_path, {}, {}, mix_temperature=-1)
