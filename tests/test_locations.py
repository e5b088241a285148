"""One location format for every message (issue 15, item 13): ``file:line`` where the file has lines.
The same row is named the same way by ingestion errors, the audit, ``data inspect`` and the
tokenized rows that ``preview`` and training report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from tunesmith.errors import DataError, RowError, location


def _chat(user: str, answer: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]})


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    rows = ["", _chat("What is 2 + 2?", "4."), _chat("Say something.", " "),  # line 3: empty answer
            _chat("Who do I write to?", "Write to jane.doe@example.org."), ""]  # line 4: an e-mail address
    rows += [_chat(f"Question {k}?", f"Answer number {k}.") for k in range(30)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _config(path: Path, **extra: object):
    from tunesmith.config import config_from_dict

    return config_from_dict({"base_model": "m", "datasets": [{"path": str(path)}], "val_set_size": 0, **extra})


def test_the_one_format() -> None:
    assert location("d.jsonl", 3, 7) == "d.jsonl:7" == RowError("d.jsonl", 3, None, "x", line=7).location
    assert location("d.parquet", 3) == "d.parquet[row 3]" == RowError("d.parquet", 3, None, "x").location
    assert location("d.parquet") == "d.parquet"


def test_ingestion_audit_and_tokenized_rows_name_the_same_line(data: Path) -> None:
    from tunesmith import audit
    from tunesmith.data import run as data_run

    with pytest.raises(DataError, match=rf"{data}:3: messages\[1\]\.content is empty"):
        data_run(_config(data))
    report = audit.run(_config(data), tokenize=False)
    found = {f.check: f for f in report.findings}
    assert list(found["schema"].locations) == [f"{data}:3"]
    assert f"{data}:4" in found["pii"].locations
    kept = data_run(_config(data, on_bad_rows="skip"))
    assert [str(r.source) for r in kept.train[:2]] == [f"{data}:2", f"{data}:4"]


def test_data_inspect_names_rows_by_line(data: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text("\n" + "\n".join(data.read_text("utf-8").splitlines()[3:]) + "\n", encoding="utf-8")
    out = run_cli("data", "inspect", str(good))
    assert out.returncode == 0, out.stderr
    assert f"(sft, {good}:2)" in " ".join(out.stdout.split())
