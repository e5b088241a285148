"""``tunesmith preview``: the real console script on a tokenizer-only base_model folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import run_cli
from tiny import build_tokenizer

from tunesmith.tokenize.tokenizer import template_text

ROWS = [
    {"messages": [{"role": "user", "content": "What is the capital of France?"},
                  {"role": "assistant", "content": "Paris is the capital."}]},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello there"}, {"role": "user", "content": "Thanks"},
                  {"role": "assistant", "content": "You are welcome"}]},
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A tokenizer-only base model (chatml as its own template), a chat jsonl and a config."""
    build_tokenizer(tmp_path / "tok", template_text("chatml"), ["<|im_start|>", "<|im_end|>"])
    assert not list((tmp_path / "tok").glob("*.safetensors"))
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), "utf-8")
    (tmp_path / "run.yaml").write_text(
        f"base_model: {tmp_path / 'tok'}\ndatasets:\n  - path: {tmp_path / 'chat.jsonl'}\n"
        f"output_dir: {tmp_path / 'out'}\nsample_packing: true\nsequence_len: 256\n",
        "utf-8",
    )
    return tmp_path


def test_preview_json_is_one_object_per_row(project: Path) -> None:
    proc = run_cli("preview", str(project / "run.yaml"), "--json", "--rows", "5")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["row"] for r in rows] == [0, 1]
    assert set(rows[0]) >= {"row", "input_ids", "labels", "text", "trained_text", "trained_spans"}
    assert rows[0]["trained_spans"] == ["Paris is the capital.<|im_end|>"]
    assert rows[1]["trained_spans"] == ["Hello there<|im_end|>", "You are welcome<|im_end|>"]
    assert rows[1]["trained_text"] == "Hello there<|im_end|>You are welcome<|im_end|>"
    assert rows[1]["text"].startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert len(rows[1]["labels"]) == len(rows[1]["input_ids"])
    assert "cache: built" in proc.stderr
    again = run_cli("preview", str(project / "run.yaml"), "--json", "--rows", "1")
    assert again.returncode == 0 and len(again.stdout.splitlines()) == 1 and "cache: reused" in again.stderr


def test_preview_human_view_has_rows_and_summary(project: Path) -> None:
    proc = run_cli("preview", str(project / "run.yaml"), "--set", "train_on_turns=last")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "row 1" in out and "chat.jsonl:2" in out and "You are welcome<|im_end|>" in out
    assert "rows: 2 train, 0 eval" in out and "trained:" in out and "dropped: 0 rows" in out
    assert "packing efficiency:" in out and "(sample_packing: true)" in out
    assert "padded efficiency without packing: 100.0%" in out
    every_turn = run_cli("preview", str(project / "run.yaml")).stdout
    header = re.compile(r"row 1 · \S+ · \d+ tokens, (\d+) trained")
    trained_last, trained_all = (int(header.search(text).group(1)) for text in (out, every_turn))
    assert 0 < trained_last < trained_all  # train_on_turns=last drops the first reply of row 1


def test_preview_without_a_chat_template_is_a_clean_error(project: Path) -> None:
    bare = project / "bare"
    build_tokenizer(bare, None)
    proc = run_cli("preview", str(project / "run.yaml"), "--set", f"base_model={bare}")
    assert proc.returncode == 1
    assert "has no chat template" in proc.stderr and "Traceback" not in proc.stderr


def test_preview_uses_the_sequence_len_train_will_use(tmp_path: Path) -> None:
    """sequence_len unset and the model's context shorter than the default: train lowers it (and drops longer rows);
    preview tokenized with 2048 and showed rows train would drop."""
    from tiny import build_model

    tok = build_tokenizer(tmp_path / "base", template_text("chatml"), ["<|im_start|>", "<|im_end|>"])
    build_model(tmp_path / "base", tok, max_positions=24)
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), "utf-8")
    (tmp_path / "run.yaml").write_text(f"base_model: {tmp_path / 'base'}\ndatasets:\n  - path: {tmp_path / 'chat.jsonl'}\n"
                                       f"output_dir: {tmp_path / 'out'}\n", "utf-8")
    proc = run_cli("preview", str(tmp_path / "run.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "the default 2048 is longer than the model's context, so this run uses 24" in proc.stderr
    assert "dropped: 2 rows" in proc.stdout and "too_long" in proc.stdout  # both rows are longer than 24
