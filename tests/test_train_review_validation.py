"""early_stopping_patience / eval_steps / evals_per_epoch without validation rows: an error before the weights load
(the run trained without evaluation or early stopping, without a word)."""

from __future__ import annotations

import pytest

from test_train import base, make_config, run_cli, sft_rows, write_jsonl  # noqa: F401 (the tiny base fixture)
from tunesmith.errors import ConfigError
from tunesmith.train import run


@pytest.fixture
def no_weights(monkeypatch):
    """Loading the model is a test failure: the check must come first."""
    from tunesmith.train import model

    def refuse(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(model, "load_base", refuse)


def test_val_set_size_zero_is_refused_before_the_data(base, tmp_path, monkeypatch, no_weights):  # noqa: F811
    import tunesmith.data

    monkeypatch.setattr(tunesmith.data, "run", lambda *a, **k: pytest.fail("the data was read"))
    cfg = make_config(base, tmp_path, val_set_size=0, early_stopping_patience=2)
    with pytest.raises(ConfigError) as info:
        run(cfg, quiet=True, say=lambda s: None)
    message = str(info.value)
    assert message.startswith("<config>: early_stopping_patience: needs validation data and this run has none (val_set_size: 0)")
    assert "set val_set_size" in message and "eval_datasets" in message


@pytest.mark.parametrize("key,value", [("eval_steps", 2), ("early_stopping_patience", 2), ("evals_per_epoch", 2)])
def test_a_small_set_without_a_default_split_is_refused_before_the_weights(base, tmp_path, no_weights, key,
                                                                          value):  # noqa: F811
    cfg = make_config(base, tmp_path, **{key: value})  # 24 rows, val_set_size unset: no default split
    with pytest.raises(ConfigError) as info:
        run(cfg, quiet=True, say=lambda s: None)
    message = str(info.value)
    assert message.startswith(f"<config>: {key}: needs validation data and this run has none (fewer than 200 training rows")
    assert "set val_set_size" in message and "eval_datasets" in message
    assert not (tmp_path / "run" / "run.json").exists()  # output_dir not claimed


def test_the_cli_names_the_file_and_line(base, tmp_path):  # noqa: F811
    import yaml

    data = write_jsonl(tmp_path / "d.jsonl", sft_rows(8))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"base_model": str(base), "datasets": [{"path": str(data)}], "bf16": False,
                                    "output_dir": str(tmp_path / "run"), "val_set_size": 0, "eval_steps": 2},
                                   sort_keys=False))
    out = run_cli("train", str(path), "--quiet")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"error: {path}:7: eval_steps: needs validation data" in out.stderr, out.stderr


def test_with_validation_rows_the_settings_apply(base, tmp_path):  # noqa: F811
    cfg = make_config(base, tmp_path, val_set_size=4, eval_steps=2, early_stopping_patience=2, max_steps=4,
                      sample_generations=0)
    result = run(cfg, quiet=True, say=lambda s: None)
    assert result.best_eval_loss is not None
