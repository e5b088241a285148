"""``tunesmith.data.run(config)``: bad-row policy, validation split, method/kind check, fingerprint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tunesmith.config import config_from_dict
from tunesmith.data import run
from tunesmith.errors import ConfigError, DataError

FIX = Path(__file__).resolve().parent / "fixtures" / "data"


def chat_file(path: Path, n: int, bad: tuple[int, ...] = ()) -> Path:
    rows = []
    for i in range(n):
        role = "asistant" if i in bad else "assistant"
        rows.append({"messages": [{"role": "user", "content": f"q{i}"}, {"role": role, "content": f"a{i}"}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(tmp_path: Path, **over: Any):
    raw = {"base_model": "tiny", "datasets": [str(tmp_path / "train.jsonl")], "output_dir": str(tmp_path / "out")}
    return config_from_dict({**raw, **over})


def test_split_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    chat_file(tmp_path / "train.jsonl", 20)
    a = run(config(tmp_path, val_set_size=0.25, seed=1))
    b = run(config(tmp_path, val_set_size=0.25, seed=1))
    c = run(config(tmp_path, val_set_size=0.25, seed=2))
    rows = lambda recs: [r.source.row for r in recs]  # noqa: E731
    assert len(a.train) == 15 and len(a.eval) == 5
    assert rows(a.eval) == rows(b.eval) and rows(a.eval) != rows(c.eval)
    assert sorted(rows(a.train) + rows(a.eval)) == list(range(1, 21))
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert len(run(config(tmp_path, val_set_size=3)).eval) == 3
    assert run(config(tmp_path)).eval == []


def test_without_eval_data_a_validation_set_is_split_off_by_default(tmp_path: Path) -> None:
    """Issue 15 item 6: 5 % of the training rows, at least 20, at most 1,000, from 200 rows on;
    ``val_set_size: 0`` turns it off; what was done is recorded (run.json's ``validation``)."""
    from tunesmith.data.pipeline import default_split_rows

    assert [default_split_rows(n) for n in (19, 199, 200, 400, 500, 1000, 20_000, 30_000)] == [
        0, 0, 20, 20, 25, 50, 1000, 1000]
    chat_file(tmp_path / "train.jsonl", 500)
    a, b = run(config(tmp_path)), run(config(tmp_path))
    assert (len(a.train), len(a.eval)) == (475, 25)
    assert [r.source.row for r in a.eval] == [r.source.row for r in b.eval]  # seeded
    assert {r.source.row for r in a.train}.isdisjoint(r.source.row for r in a.eval)
    assert a.validation["source"] == "default" and a.validation["rows"] == 25
    assert "val_set_size: 0 turns it off" in a.validation["why"]
    off = run(config(tmp_path, val_set_size=0))
    assert (len(off.train), off.eval, off.validation["source"]) == (500, [], "none")
    assert off.fingerprint != a.fingerprint
    chat_file(tmp_path / "train.jsonl", 150)
    small = run(config(tmp_path))
    assert (len(small.train), small.eval) == (150, [])
    assert "fewer than 200 training rows" in small.validation["why"]


def test_rows_sharing_a_prompt_stay_on_one_side_of_the_split(tmp_path: Path) -> None:
    """A dataset with repeats (alpaca_en_demo has some) split by row put copies on both sides, and
    the audit's split_contamination then refused the run tunesmith had split itself."""
    rows = [{"messages": [{"role": "user", "content": f"q{i % 150}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(300)]  # every prompt twice, with two different answers
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for over in ({}, {"val_set_size": 0.3, "seed": 3}):
        result = run(config(tmp_path, **over))
        prompts = lambda recs: {r.messages[0].content for r in recs}  # noqa: E731
        assert prompts(result.train).isdisjoint(prompts(result.eval))
        assert len(result.eval) % 2 == 0 and len(result.train) + len(result.eval) == 300
    assert len(run(config(tmp_path)).eval) == 20  # the default's 20 rows: 10 whole prompt groups


def test_split_too_large(tmp_path: Path) -> None:
    chat_file(tmp_path / "train.jsonl", 3)
    with pytest.raises(ConfigError, match="val_set_size: 3 would leave no training rows"):
        run(config(tmp_path, val_set_size=3))


def test_eval_datasets_replace_the_split(tmp_path: Path) -> None:
    chat_file(tmp_path / "train.jsonl", 4)
    chat_file(tmp_path / "dev.jsonl", 2)
    result = run(config(tmp_path, val_set_size=0.5, eval_datasets=[str(tmp_path / "dev.jsonl")],
                        test_datasets=[str(tmp_path / "dev.jsonl")]))
    assert (len(result.train), len(result.eval), len(result.test)) == (4, 2, 2)


def test_skip_keeps_rejected_rows_for_the_run_directory(tmp_path: Path) -> None:
    """The data stage returns every skipped row with its reason; `train` writes them to
    <output_dir>/rejected_rows.jsonl (with tokenization's drops). Reading data never writes into
    output_dir (audit and preview must not create a folder train would then refuse)."""
    chat_file(tmp_path / "train.jsonl", 6, bad=(1, 4))
    result = run(config(tmp_path, on_bad_rows="skip"))
    assert len(result.train) == 4 and result.skipped == 2
    entries = [json.loads(json.dumps(r.to_dict())) for r in result.rejected]
    assert [(e["line"], e["field"], e["stage"]) for e in entries] == [(2, "messages[1].role", "data"),
                                                                       (5, "messages[1].role", "data")]
    assert not (tmp_path / "out").exists()


def test_error_policy_raises_with_all_rows(tmp_path: Path) -> None:
    chat_file(tmp_path / "train.jsonl", 6, bad=(1, 4))
    with pytest.raises(DataError) as info:
        run(config(tmp_path))
    assert len(info.value.errors) == 2 and str(info.value).startswith("2 invalid rows out of 6:")
    assert not (tmp_path / "out" / "rejected_rows.jsonl").exists()


def test_all_rows_skipped_is_an_error(tmp_path: Path) -> None:
    chat_file(tmp_path / "train.jsonl", 2, bad=(0, 1))
    with pytest.raises(DataError, match=r"no training rows left \(2 invalid rows skipped\)"):
        run(config(tmp_path, on_bad_rows="skip"))


def test_method_must_fit_record_kind(tmp_path: Path) -> None:
    cfg = config(tmp_path, datasets=[str(FIX / "preference.jsonl")])
    expected = r"method: sft trains on sft rows, but .*preference.jsonl:1 is a preference row \(.* method: dpo \| orpo \| rm\)"
    with pytest.raises(ConfigError, match=expected):
        run(cfg)
    dpo = run(config(tmp_path, datasets=[str(FIX / "preference.jsonl")], method="dpo"))
    assert len(dpo.train) == 4 and dpo.formats == {str(FIX / "preference.jsonl"): "preference"}
    assert len(run(config(tmp_path, datasets=[str(FIX / "text.txt")], method="cpt")).train) == 4
