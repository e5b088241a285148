"""Bad input: every invalid row is reported with file, line/row and field; skip never drops silently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tunesmith.config import DatasetSpec
from tunesmith.data import DataSourceError, ingest
from tunesmith.errors import DataError, RowError

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


def lines(*rows: Any) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def errors_of(path: Path, method: str = "sft", **spec: Any) -> list[RowError]:
    with pytest.raises(DataError) as info:
        ingest([DatasetSpec(path=str(path), **spec)], method=method)
    return info.value.errors


def only_error(path: Path, **spec: Any) -> str:
    errors = errors_of(path, **spec)
    assert len(errors) == 1, errors
    return str(errors[0])


def test_unknown_role_exact_message(tmp_path: Path) -> None:
    bad = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                        {"role": "asistant", "content": "c"}]}
    path = tmp_path / "train.jsonl"
    path.write_text(lines(*[GOOD] * 16, bad))
    errors = errors_of(path)
    assert [str(e) for e in errors] == [
        f"{path}:17: messages[2].role 'asistant' is not one of system, user, assistant, tool "
        "(did you mean 'assistant'?)"
    ]
    assert (errors[0].line, errors[0].row, errors[0].field) == (17, 17, "messages[2].role")


def test_all_rows_checked_and_reported_once(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text(lines(GOOD, "{not json", GOOD, {"messages": "hello"}, GOOD))
    with pytest.raises(DataError) as info:
        ingest([DatasetSpec(path=str(path))])
    text = str(info.value)
    assert text.startswith("2 invalid rows out of 5:")
    assert f"{path}:2: invalid JSON: Expecting property name enclosed in double quotes (column 2)" in text
    assert f"{path}:4: messages must be a list of messages (got string 'hello')" in text
    assert "on_bad_rows: skip" in text


def test_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl"
    path.write_text(lines(GOOD) + '{"messages": [{"role": "user", "con')
    message = only_error(path)
    assert message.startswith(f"{path}:2: invalid JSON: Unterminated string")
    assert "was it truncated?" in message


def test_non_utf8_bytes(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(lines(GOOD).encode() + '{"messages": [{"role": "user", "content": "café"}]}\n'.encode("latin-1"))
    assert only_error(path) == f"{path}:2: is not valid UTF-8 (byte 0xe9 at column 47); save the file as UTF-8"


def test_non_utf8_in_json_array_names_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    text = '[\n{"instruction": "a", "output": "b"},\n{"instruction": "é", "output": "b"}\n]'
    path.write_bytes(text.encode("latin-1"))
    assert only_error(path).startswith(f"{path}:3: is not valid UTF-8 (byte 0xe9")


@pytest.mark.parametrize("name,content", [("empty.jsonl", ""), ("blank.json", "  \n"), ("empty.csv", ""),
                                          ("empty.txt", "\n\n"), ("array.json", "[]")])
def test_empty_file(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    assert only_error(path, type="text") == f"{path}: file is empty (no rows)"


def test_missing_required_field(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"instruction": "a", "output": "b"}, {"instruction": "a", "outptu": "b"}], indent=1))
    errors = errors_of(path, type="alpaca")
    assert str(errors[0]) == f"{path}:6: output is missing (the row has: instruction, outptu) (did you mean 'outptu'?)"
    assert errors[0].row == 2 and errors[0].field == "output"

NAN, INF = float("nan"), float("inf")


def test_forced_type_names_missing_field(tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    path.write_text(lines(GOOD))
    assert only_error(path, type="alpaca").startswith(f"{path}:1: instruction is missing (the row has: messages)")


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"instruction": "a", "output": 42}, "output must be a string (got number 42)"),
        ({"messages": [{"role": "user", "content": 7}, {"role": "assistant", "content": "b"}]},
         "messages[0].content must be a string or a list of content parts (got number 7)"),
        ({"messages": ["hi"]}, "messages[0] must be an object with role and content (got string 'hi')"),
        ({"messages": [{"role": "user", "content": "a", "loss_weight": "x"}, {"role": "assistant", "content": "b"}]},
         "messages[0].loss_weight must be a finite number >= 0 (got string 'x')"),
        # JSON readers accept the NaN and Infinity literals; either weight would turn the loss into nan
        ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "loss_weight": NAN}]},
         "messages[1].loss_weight must be a finite number >= 0 (got number nan)"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "loss_weight": INF}]},
         "messages[1].loss_weight must be a finite number >= 0 (got number inf)"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "url": "x"}]}]},
         "messages[0].content[0].type 'image' is not supported (use one of text, reasoning, tool_call)"),
        ({"messages": GOOD["messages"], "label": "maybe"}, "label must be true or false (got string 'maybe')"),
        ({"messages": GOOD["messages"], "tools": "[{broken"}, "tools is not valid JSON"),
        ([1, 2], "row must be a JSON object (got list [1, 2])"),
    ],
)
def test_wrong_type(tmp_path: Path, row: Any, expected: str) -> None:
    path = tmp_path / "w.jsonl"
    path.write_text(lines(row))
    assert only_error(path).startswith(f"{path}:1: {expected}")


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([{"role": "user", "content": "  "}, {"role": "assistant", "content": "b"}], "messages[0].content is empty"),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}], "messages[1].content is empty"),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": []}], "messages[1].content is empty"),
        ([], "messages is empty (no messages)"),
    ],
)
def test_empty_content(tmp_path: Path, messages: list[Any], expected: str) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text(lines({"messages": messages}))
    assert only_error(path) == f"{path}:1: {expected}"


def test_empty_alpaca_output(tmp_path: Path) -> None:
    path = tmp_path / "e.json"
    path.write_text(json.dumps([{"instruction": "a", "input": "", "output": " "}]))
    assert only_error(path) == f"{path}:1: output is empty"


def test_must_end_with_assistant_for_sft_only(tmp_path: Path) -> None:
    path = tmp_path / "end.jsonl"
    path.write_text(lines(
        {"messages": [*GOOD["messages"], {"role": "user", "content": "c"}]},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}]},
    ))
    assert [str(e) for e in errors_of(path)] == [
        f"{path}:1: messages[2] is a user turn; a conversation must end with an assistant turn for sft",
        f"{path}:2: messages has no assistant turn (nothing to train on for sft)",
    ]
    assert len(ingest([DatasetSpec(path=str(path))], method="cpt").records) == 2


def test_chosen_equals_rejected(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(lines(
        {"prompt": "q", "chosen": "Same answer.", "rejected": "Same answer. "},
        {"chosen_messages": GOOD["messages"], "rejected_messages": GOOD["messages"]},
    ))
    assert [str(e) for e in errors_of(path)] == [
        f"{path}:1: chosen is identical to rejected (nothing to prefer)",
        f"{path}:2: chosen_messages is identical to rejected_messages (nothing to prefer)",
    ]


def test_label_outside_label_set(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("text,label\ngood film,positive\nbad film,postive\n")
    errors = errors_of(path, labels=["positive", "negative"])
    assert [str(e) for e in errors] == [
        f"{path}:3: label 'postive' is not one of positive, negative (did you mean 'positive'?)"
    ]


def test_invalid_json_array_reports_line_and_reads_later_rows(tmp_path: Path) -> None:
    path = tmp_path / "arr.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "a" "output": "b"},\n'
                    '  {"instruction": "c", "output": "d"}\n]\n')
    assert only_error(path) == f"{path}:3: invalid JSON: Expecting ',' delimiter (column 23)"
    result = ingest([DatasetSpec(path=str(path))], on_bad_rows="skip")
    assert [(r.source.row, r.source.line) for r in result.records] == [(1, 2), (3, 4)]


def test_truncated_json_array(tmp_path: Path) -> None:
    path = tmp_path / "arr.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "a", "out')
    assert "was it truncated?" in only_error(path)


def test_csv_ragged_row(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("text,label\na,b\nc,d,e\n")
    assert only_error(path) == f"{path}:3: has 3 fields but the header has 2"


def test_undetectable_format_lists_formats(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text(lines({"question": "q", "reply": "r"}))
    with pytest.raises(DataSourceError) as info:
        ingest([DatasetSpec(path=str(path))])
    text = str(info.value)
    assert text.startswith(f"{path}: cannot detect the format: the rows have keys question, reply")
    assert "alpaca (instruction, output)" in text and "Set type:" in text


def test_missing_path_and_unsupported_suffix(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="nope.jsonl: no such file or folder"):
        ingest([DatasetSpec(path=str(tmp_path / "nope.jsonl"))])
    odd = tmp_path / "data.xml"
    odd.write_text("<x/>")
    with pytest.raises(DataSourceError, match=r"unsupported file type '\.xml'"):
        ingest([DatasetSpec(path=str(odd))])


def test_skip_writes_every_rejected_row(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(lines(GOOD, "{oops", {"messages": [{"role": "bot?", "content": "x"}]}, GOOD))
    rejected = tmp_path / "out" / "rejected_rows.jsonl"
    result = ingest([DatasetSpec(path=str(path))], on_bad_rows="skip", rejected_path=rejected)
    assert len(result.records) == 2 and result.skipped == 2 and result.rows == 4
    entries = [json.loads(line) for line in rejected.read_text().splitlines()]
    assert [(e["line"], e["row"], e["field"]) for e in entries] == [(2, 2, None), (3, 3, "messages[0].role")]
    assert entries[0]["raw"] == "{oops" and entries[0]["source"] == str(path)
    assert entries[1]["reason"].startswith("'bot?' is not one of system, user, assistant, tool")
    assert entries[1]["raw"] == {"messages": [{"role": "bot?", "content": "x"}]}
    assert "skipped 2 invalid rows out of 4" in caplog.text


def test_a_missing_comma_between_rows_is_no_row(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Both rows around a missing ',' are read; the comma was also counted as a skipped row of 5."""
    path = tmp_path / "bad.json"
    path.write_text('[\n{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"},\n'
                    '{"instruction": "e", "output": 1}\n]\n')
    result = ingest([DatasetSpec(path=str(path))], on_bad_rows="skip")
    assert len(result.records) == 2 and result.rows == 3
    assert [e.row for e in result.errors] == [None, 3]  # the comma (between rows), then the bad row
    assert "skipped 1 invalid row out of 3 and 1 problem between rows" in caplog.text


def test_on_bad_rows_value_checked(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_text(lines(GOOD))
    from tunesmith.errors import ConfigError

    with pytest.raises(ConfigError, match="on_bad_rows: must be one of error, skip"):
        ingest([DatasetSpec(path=str(path))], on_bad_rows="drop")
