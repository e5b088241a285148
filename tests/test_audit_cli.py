"""`tunesmith audit` end to end: the real console script on files with many defects at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from audit_rows import clean_chat
from conftest import run_cli
from tiny import build_tokenizer

from tunesmith.config import load_config
from tunesmith.audit import run
from tunesmith.tokenize.tokenizer import template_text


def rows_of(n: int, seed: int) -> list[dict[str, Any]]:
    records = clean_chat(n, seed=seed)
    return [{"messages": [{"role": m.role, "content": m.content} for m in r.messages]} for r in records]


def write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((json.dumps(r) if not isinstance(r, str) else r) + "\n" for r in rows), "utf-8")
    return path


def user_answer(user: str, answer: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("audit")
    build_tokenizer(root / "tok", template_text("chatml"), ["<|im_start|>", "<|im_end|>"])
    train = rows_of(150, seed=11)
    first, second = train[0]["messages"], train[1]["messages"]
    train[10] = dict(train[0])  # line 11: exact duplicate of line 1
    near = first[1]["content"].replace(first[1]["content"].split()[1], "zebra", 1)
    train[20] = user_answer(first[0]["content"] + " !", near)  # line 21: near duplicate
    train[30] = user_answer("Who do I email, case 30?", "Write to someone@example.com any time you like.")
    train[40] = user_answer("Continue the story, case 40?", "She opened the door, looked outside and then the")
    train[50] = user_answer("Explain caf\u00c3\u00a9 life, case 50?", "A café is a small restaurant serving coffee.")
    pirate = user_answer("Describe the sea, case 60?", "Arr, the sea be wide and deep, matey.")
    train[60] = {"messages": [{"role": "system", "content": "You are a pirate."}, *pirate["messages"]]}
    train[70] = "{not json"  # line 71: unreadable
    train[80] = {"conversation": []}  # line 81: no messages field
    write(root / "train.jsonl", train)
    held = rows_of(30, seed=12)
    held[3] = train[5]  # eval line 4 also stands in train
    write(root / "eval.jsonl", held)
    long_row = user_answer("Tell me everything, case 1?", " ".join([second[1]["content"]] * 12))
    write(root / "test.jsonl", [long_row, *rows_of(20, seed=13)])
    (root / "run.yaml").write_text(
        f"base_model: {root / 'tok'}\nchat_template: chatml\nsequence_len: 400\n"
        f"datasets: [{root / 'train.jsonl'}]\neval_datasets: [{root / 'eval.jsonl'}]\n"
        f"test_datasets: [{root / 'test.jsonl'}]\n", "utf-8")
    return root


def test_json_report_finds_every_planted_defect(project: Path) -> None:
    result = run_cli("audit", str(project / "run.yaml"), "--json")
    assert result.returncode == 1, result.stderr  # errors present, default --fail-on error
    report = json.loads(result.stdout)
    assert report["rows"] == 148 + 30 + 21
    by = {f["check"]: f for f in report["findings"]}
    train = str(project / "train.jsonl")
    expected = {
        "schema": [f"{train}:71", f"{train}:81"], "exact_duplicate": [f"{train}:11"],
        "near_duplicate": [f"{train}:21"], "pii": [f"{train}:31"], "truncated_response": [f"{train}:41"],
        "encoding": [f"{train}:51"], "system_prompt_inconsistent": [f"{train}:61"],
        "split_contamination": [f"{project / 'eval.jsonl'}:4"], "over_length": [f"{project / 'test.jsonl'}:1"],
    }
    for check, examples in expected.items():
        assert check in by, f"{check} missing: {sorted(by)}"
        assert by[check]["examples"] == examples, check
        assert set(by[check]) == {"check", "severity", "count", "examples", "message", "fix"}
    assert by["schema"]["severity"] == "error" and by["split_contamination"]["severity"] == "error"
    assert by["pii"]["severity"] == "warning"
    lengths = report["stats"]["token_lengths"]
    assert set(lengths) == {"train", "eval", "test"} and report["stats"]["token_lengths_exact"] is True
    assert all(set(v) >= {"p50", "p90", "p99", "max"} for v in lengths.values())
    assert report["stats"]["skipped_checks"] == {}


def test_fail_on_and_html(project: Path, tmp_path: Path) -> None:
    page = tmp_path / "audit.html"
    result = run_cli("audit", str(project / "run.yaml"), "--fail-on", "never", "--html", str(page))
    assert result.returncode == 0, result.stderr
    assert "split_contamination" in result.stdout and "p50" in result.stdout  # the human table
    html = page.read_text("utf-8")
    assert "<table>" in html and "near_duplicate" in html and f"{project / 'train.jsonl'}:31" in html


def test_data_mode_and_exit_codes(tmp_path: Path) -> None:
    data = write(tmp_path / "small.jsonl", rows_of(60, seed=3))  # clean but small: one warning
    ok = run_cli("audit", str(data))
    assert ok.returncode == 0, ok.stderr
    assert "too_few_examples" in ok.stdout and "estimated" in ok.stdout
    assert run_cli("audit", str(data), "--fail-on", "warning").returncode == 1
    bad = run_cli("audit", str(data), "--fail-on", "sometimes")
    assert bad.returncode == 1 and "--fail-on" in bad.stderr and "Traceback" not in bad.stderr


def test_run_splits_off_validation_and_collects_bad_rows(project: Path) -> None:
    config = load_config(project / "run.yaml", ["eval_datasets=[]", "test_datasets=[]", "val_set_size=0.2"])
    report = run(config, tokenize=False)
    assert report.stats["splits"] == {"train": 118, "eval": 30, "test": 0}  # 148 good rows, 20 % held out
    assert report.by_check()["schema"].count == 2  # on_bad_rows: error still reports, does not raise
    assert "over_length" in report.stats["skipped_checks"]
