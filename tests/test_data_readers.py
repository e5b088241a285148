"""File layouts: Parquet, CSV with JSON cells, folders, save_to_disk, hub ids, odd JSON files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tunesmith.config import DatasetSpec
from tunesmith.data import DataSourceError, Message, ingest
from tunesmith.errors import DataError

FIX = Path(__file__).resolve().parent / "fixtures" / "data"
CHAT_ROWS = [json.loads(line) for line in (FIX / "chat.jsonl").read_text().splitlines()]


def test_parquet_rows_keep_nested_messages(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    turns = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}] for i in range(3)]
    rows = [{"messages": t} for t in turns]
    path = tmp_path / "chat.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    result = ingest([DatasetSpec(path=str(path))])
    assert result.formats == {str(path): "chat"}
    assert [r.messages[1].content for r in result.records] == ["a0", "a1", "a2"]
    assert [str(r.source) for r in result.records] == [f"{path}[row {i}]" for i in (1, 2, 3)]


def test_parquet_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError) as info:
        ingest([DatasetSpec(path=str(path))])
    assert f"{path}: is not a readable Parquet file" in str(info.value)


def test_csv_json_cells_are_parsed(tmp_path: Path) -> None:
    path = tmp_path / "chat.csv"
    messages = json.dumps([{"role": "user", "content": "Hi, you"}, {"role": "assistant", "content": "Hello"}])
    tools = json.dumps([{"name": "f", "parameters": {}}])
    path.write_text('messages,tools\n"' + messages.replace('"', '""') + '","' + tools.replace('"', '""') + '"\n')
    record = ingest([DatasetSpec(path=str(path))]).records[0]
    assert record.messages == (Message("user", "Hi, you"), Message("assistant", "Hello"))
    assert record.tools == ({"type": "function", "function": {"name": "f", "parameters": {}}},)


def test_csv_kto_labels_as_strings(tmp_path: Path) -> None:
    path = tmp_path / "kto.csv"
    path.write_text('prompt,completion,label\nq,a,true\nq,b,False\n')
    assert [r.label for r in ingest([DatasetSpec(path=str(path))]).records] == [True, False]


def test_csv_literal_quotes_beside_a_multiline_cell_are_read_as_the_csv_module_reads_them(tmp_path: Path) -> None:
    """An inch mark in an unquoted cell, in a record whose quoted cell spans two lines: valid for the
    csv module. It was refused as "a quote never closed", and reading resumed mid-record, which made
    a row out of the cell's second line."""
    import csv

    path = tmp_path / "q.csv"
    path.write_text('instruction,output\n"Describe\nthe TV",It is a 55" screen\nQ2,A2\n')
    with path.open(newline="") as fh:
        expected = [dict(zip(["instruction", "output"], row)) for row in list(csv.reader(fh))[1:]]
    result = ingest([DatasetSpec(path=str(path))])
    assert not result.errors and result.rows == 2
    got = [{"instruction": r.messages[0].content, "output": r.messages[1].content} for r in result.records]
    assert got == expected == [{"instruction": "Describe\nthe TV", "output": 'It is a 55" screen'},
                               {"instruction": "Q2", "output": "A2"}]


def test_folder_reads_supported_files_sorted_recursively(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    shutil.copy(FIX / "text.jsonl", tmp_path / "b" / "2.jsonl")
    shutil.copy(FIX / "text.jsonl", tmp_path / "1.jsonl")
    (tmp_path / "3.txt").write_text("from txt\n")
    (tmp_path / ".hidden.jsonl").write_text("garbage")
    (tmp_path / "notes.md").write_text("ignored")
    result = ingest([DatasetSpec(path=str(tmp_path))])
    assert [Path(r.source.file).relative_to(tmp_path).as_posix() for r in result.records] == [
        "1.jsonl", "1.jsonl", "3.txt", "b/2.jsonl", "b/2.jsonl",
    ]
    assert result.records[2].text == "from txt"
    only = ingest([DatasetSpec(path=str(tmp_path), data_files=["b/*.jsonl"])])
    assert len(only.records) == 2


def test_a_folder_never_leaves_out_a_file_or_a_saved_dataset_without_a_word(tmp_path: Path) -> None:
    """A .jsonl.gz or .tsv beside the .jsonl files, or a save_to_disk folder inside, was skipped
    silently (the saved dataset's state.json was even read as rows): refused, naming them."""
    import datasets

    shutil.copy(FIX / "text.jsonl", tmp_path / "a.jsonl")
    (tmp_path / "README.md").write_text("a dataset card")  # documentation: fine
    (tmp_path / "LICENSE").write_text("MIT")
    (tmp_path / "b.jsonl.gz").write_bytes(b"\x1f\x8b")
    (tmp_path / "c.tsv").write_text("instruction\toutput\nq\ta\n")
    with pytest.raises(DataSourceError, match=r"holds files tunesmith cannot read: b.jsonl.gz, c.tsv \(supported"):
        ingest([DatasetSpec(path=str(tmp_path))])
    assert len(ingest([DatasetSpec(path=str(tmp_path), data_files=["*.jsonl"])]).records) == 2  # chosen: fine
    (tmp_path / "b.jsonl.gz").unlink()
    (tmp_path / "c.tsv").unlink()
    datasets.Dataset.from_list([{"text": "saved row"}] * 3).save_to_disk(str(tmp_path / "part2"))
    with pytest.raises(DataSourceError, match=r"part2: is a saved dataset \(save_to_disk\) inside a folder dataset"):
        ingest([DatasetSpec(path=str(tmp_path))])
    assert len(ingest([DatasetSpec(path=str(tmp_path / "part2"))]).records) == 3


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="folder has no data files"):
        ingest([DatasetSpec(path=str(tmp_path))])


def test_save_to_disk_folder(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list(CHAT_ROWS[:1] * 2).save_to_disk(str(tmp_path / "ds"))
    result = ingest([DatasetSpec(path=str(tmp_path / "ds"))])
    assert len(result.records) == 2 and result.records[0].messages[2] == Message("assistant", "Paris.")
    assert result.records[1].source.row == 2
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(CHAT_ROWS[:1]),
                               "validation": datasets.Dataset.from_list(CHAT_ROWS[:1] * 3)})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert len(ingest([DatasetSpec(path=str(tmp_path / "dd"), split="validation")]).records) == 3
    with pytest.raises(DataSourceError, match=r"has no split 'test' \(it has: train, validation; set split:\)"):
        ingest([DatasetSpec(path=str(tmp_path / "dd"), split="test")])


def test_hub_id_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataSourceError) as info:
        ingest([DatasetSpec(path="tunesmith-test/definitely-not-cached")])
    assert str(info.value) == (
        "tunesmith-test/definitely-not-cached: is not a local file or folder, and hub dataset "
        "'tunesmith-test/definitely-not-cached' is not in the local cache (HF_HUB_OFFLINE=1 forbids "
        "downloading it: download it once online, or give a local path)"
    )


def test_json_file_holding_json_lines_or_one_object(tmp_path: Path) -> None:
    lines = tmp_path / "lines.json"
    lines.write_text("".join(json.dumps(r) + "\n" for r in CHAT_ROWS))
    assert [r.source.line for r in ingest([DatasetSpec(path=str(lines))]).records] == [1, 2, 3]
    one = tmp_path / "one.json"
    one.write_text(json.dumps(CHAT_ROWS[0], indent=2))
    assert len(ingest([DatasetSpec(path=str(one))]).records) == 1


def test_a_pretty_printed_jsonl_file_is_read_as_json(tmp_path: Path) -> None:
    """Objects written with indent into a .jsonl: every line was an 'invalid JSON' row (24 errors for 2 rows)."""
    path = tmp_path / "pretty.jsonl"
    path.write_text("".join(json.dumps(r, indent=2) + "\n" for r in CHAT_ROWS[:2]))
    records = ingest([DatasetSpec(path=str(path))]).records
    assert len(records) == 2 and records[0].source.line == 1 and records[1].source.line > 2
    assert records[0].messages[0].content == CHAT_ROWS[0]["messages"][0]["content"]


def test_bom_crlf_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "win.jsonl"
    body = "\r\n".join(json.dumps(r) for r in CHAT_ROWS[:2]) + "\r\n\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    records = ingest([DatasetSpec(path=str(path))]).records
    assert [r.source.line for r in records] == [1, 2]


def test_fingerprint_tracks_bytes_and_settings(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    shutil.copy(FIX / "text.jsonl", path)
    first = ingest([DatasetSpec(path=str(path))]).fingerprint
    assert ingest([DatasetSpec(path=str(path))]).fingerprint == first
    assert ingest([DatasetSpec(path=str(path), type="text")]).fingerprint != first
    path.write_text(path.read_text().replace("one", "uno"))
    assert ingest([DatasetSpec(path=str(path))]).fingerprint != first
