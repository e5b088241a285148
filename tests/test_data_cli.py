"""``tunesmith data inspect`` through the real console script."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli

FIX = Path(__file__).resolve().parent / "fixtures" / "data"


def test_inspect_json_summary() -> None:
    out = run_cli("data", "inspect", str(FIX / "chat.jsonl"), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["format"] == "chat" and data["rows"] == 3 and data["kind_counts"] == {"sft": 3}
    assert data["roles"] == {"system": 1, "user": 3, "assistant": 4, "tool": 1}
    assert data["lengths"]["user"] == {"min": 12, "p50": 16, "max": 18}
    assert len(data["examples"]) == 3
    assert data["examples"][0]["messages"][2] == {"role": "assistant", "content": "Paris."}


def test_inspect_human_output_and_forced_type() -> None:
    out = run_cli("data", "inspect", str(FIX / "rag.jsonl"))
    assert out.returncode == 0, out.stderr
    assert "rag" in out.stdout and "rows    3 (sft 3)" in out.stdout and "example 3" in out.stdout
    forced = run_cli("data", "inspect", str(FIX / "text.jsonl"), "--type", "text", "--json")
    assert json.loads(forced.stdout)["format"] == "text"


def test_inspect_bad_file_exits_1_with_row_errors() -> None:
    path = FIX / "bad_chat.jsonl"
    out = run_cli("data", "inspect", str(path))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "3 invalid rows out of 4:" in out.stderr
    assert (f"{path}:2: messages[3].role 'asistant' is not one of system, user, assistant, tool "
            "(did you mean 'assistant'?)") in out.stderr
    assert f"{path}:3: invalid JSON:" in out.stderr
    assert f"{path}:4: messages has no assistant turn (nothing to train on for sft)" in out.stderr


def test_inspect_user_mistakes_have_no_traceback(tmp_path: Path) -> None:
    missing = run_cli("data", "inspect", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 1 and "no such file or folder" in missing.stderr and "Traceback" not in missing.stderr
    wrong = run_cli("data", "inspect", str(FIX / "chat.jsonl"), "--type", "chatt")
    assert wrong.returncode == 1 and "(did you mean 'chat'?)" in wrong.stderr
    hub = run_cli("data", "inspect", "some-org/some-dataset")
    assert hub.returncode == 1 and "HF_HUB_OFFLINE=1 forbids downloading it" in hub.stderr
    assert "Traceback" not in hub.stderr


def test_inspect_error_locations_are_not_eaten_by_markup(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist([{"text": "[/bold] odd", "label": 3}]), path)
    out = run_cli("data", "inspect", str(path), "--type", "chat")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"{path}[row 1]: messages is missing (the row has: label, text)" in out.stderr


def test_inspect_debug_shows_traceback(tmp_path: Path) -> None:
    out = run_cli("--debug", "data", "inspect", str(tmp_path / "nope.jsonl"))
    assert out.returncode == 1 and "Traceback" in out.stderr
