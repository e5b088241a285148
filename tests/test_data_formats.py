"""Every input format normalises to the right records (own fixtures under tests/fixtures/data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tunesmith.config import DatasetSpec
from tunesmith.data import Message, Record, ToolCall, ingest

FIX = Path(__file__).resolve().parent / "fixtures" / "data"


def load(path: Path | str, **spec: Any) -> tuple[list[Record], str]:
    result = ingest([DatasetSpec(path=str(path), **spec)])
    assert result.errors == [] and result.skipped == 0
    return result.records, result.formats[str(path)]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return path


def test_chat_plain_parts_weights_reasoning_and_tools() -> None:
    records, fmt = load(FIX / "chat.jsonl")
    assert fmt == "chat" and [r.kind for r in records] == ["sft"] * 3
    first, parts, tools = records
    assert first.messages == (
        Message("system", "You are terse."),
        Message("user", "Capital of France?"),
        Message("assistant", "Paris."),
    )
    assert str(first.source) == f"{FIX / 'chat.jsonl'}:1"
    assert parts.messages == (
        Message("user", "What is 2+2?", weight=0.0),
        Message("assistant", "4", weight=1.0, reasoning="Add them."),
    )
    call = tools.messages[1]
    assert call.role == "assistant" and call.content == ""
    assert call.tool_calls == (ToolCall("get_weather", {"city": "Oslo"}),)
    assert tools.messages[2] == Message("tool", '{"temp": 3}', name="get_weather")
    assert tools.tools[0]["function"]["name"] == "get_weather"
    call_dict = tools.messages[1].to_dict()["tool_calls"][0]
    assert call_dict == {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}


def test_openai_legacy_function_call_is_a_tool_call(tmp_path: Path) -> None:
    """Before tool_calls, OpenAI wrote one ``function_call`` (content null) and a ``function`` role for its result."""
    row = {"messages": [{"role": "user", "content": "Weather?"},
                        {"role": "assistant", "content": None,
                         "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
                        {"role": "function", "name": "get_weather", "content": '{"temp": 20}'},
                        {"role": "assistant", "content": "20C."}]}
    records, _ = load(write_jsonl(tmp_path / "f.jsonl", [row]))
    assert records[0].messages[1] == Message("assistant", "", tool_calls=(ToolCall("get_weather", {"city": "Paris"}),))
    assert records[0].messages[2] == Message("tool", '{"temp": 20}', name="get_weather")


def test_alpaca_input_system_history() -> None:
    records, fmt = load(FIX / "alpaca.json")
    assert fmt == "alpaca"
    assert [m.to_dict() for m in records[0].messages] == [
        {"role": "user", "content": "Translate to French\ncat"},
        {"role": "assistant", "content": "chat"},
    ]
    assert records[1].messages[0] == Message("system", "Be friendly.")
    assert [(m.role, m.content) for m in records[2].messages] == [
        ("user", "What is 2+2?"), ("assistant", "4"), ("user", "And the double?"), ("assistant", "8"),
    ]
    assert [r.source.line for r in records] == [2, 3, 4]  # JSON array rows keep their line


def test_sharegpt_system_function_call_observation_tools_string() -> None:
    records, fmt = load(FIX / "sharegpt.json")
    assert fmt == "sharegpt"
    assert [(m.role, m.content) for m in records[0].messages] == [
        ("system", "You are kind."), ("user", "Hello"), ("assistant", "Hi there."),
    ]
    roles = [m.role for m in records[1].messages]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert records[1].messages[1].tool_calls == (ToolCall("area", {"w": 2, "h": 3}),)
    assert records[1].tools == ({"type": "function", "function": json.loads(
        '{"name": "area", "description": "Rectangle area", "parameters": {"type": "object", '
        '"properties": {"w": {"type": "number"}, "h": {"type": "number"}}}}')},)


def test_sharegpt_custom_tags(tmp_path: Path) -> None:
    path = tmp_path / "tags.json"
    path.write_text(json.dumps([{"dialog": [{"speaker": "me", "text": "Q"}, {"speaker": "bot", "text": "A"}]}]))
    records, _ = load(path, type="sharegpt", field_messages="dialog", role_tag="speaker",
                      content_tag="text", user_tag="me", assistant_tag="bot")
    assert records[0].messages == (Message("user", "Q"), Message("assistant", "A"))


def test_preference_all_layouts() -> None:
    records, fmt = load(FIX / "preference.jsonl")
    assert fmt == "preference" and all(r.kind == "preference" for r in records)
    strings, lists, ranking, full = records
    assert strings.messages == (Message("user", "Name a colour."),)
    assert strings.chosen == (Message("assistant", "Blue."),) and strings.rejected == (Message("assistant", "Seven."),)
    assert lists.chosen[0].content == "4" and lists.rejected[0].content == "5"
    assert ranking.messages == (Message("user", "Say yes."),) and ranking.chosen[0].content == "Yes."
    # full conversations: the prompt is their common prefix
    assert [m.role for m in full.messages] == ["system", "user"]
    assert full.chosen == (Message("assistant", "Hello."),)
    assert full.rejected[0].content.startswith("Greetings")


def test_preference_alpaca_style(tmp_path: Path) -> None:
    row = {"instruction": "Fix", "input": "teh", "chosen": "the", "rejected": "teh"}
    path = write_jsonl(tmp_path / "p.jsonl", [row])
    records, fmt = load(path)
    assert fmt == "preference" and records[0].messages == (Message("user", "Fix\nteh"),)


def test_preference_prompt_with_full_conversations_renders_the_prompt_once(tmp_path: Path) -> None:
    """HuggingFaceH4/ultrafeedback_binarized: a prompt column and chosen/rejected as whole conversations that
    repeat it; the prompt turn was kept twice (prompt, then chosen's own copy)."""
    row = {"prompt": "Hi", "prompt_id": "x",
           "chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
           "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "no"}],
           "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
           "score_chosen": 8.0, "score_rejected": 2.0}
    records, fmt = load(write_jsonl(tmp_path / "ufb.jsonl", [row]))
    assert fmt == "preference" and records[0].messages == (Message("user", "Hi"),)
    assert records[0].chosen == (Message("assistant", "Hello!"),)
    assert records[0].rejected == (Message("assistant", "no"),)


def test_answers_that_are_json_stay_text(tmp_path: Path) -> None:
    """Structured-output data: an answer (or prompt) that is a JSON object or list without a role is text, not a
    message to parse (it was read as one and the row refused: 'chosen.from is missing')."""
    rows = [{"prompt": "Extract name and age: Bob is 3.", "chosen": '{"name": "Bob", "age": 3}',
             "rejected": '[{"id": 1}]'},
            {"prompt": '{"task": "classify", "text": "great movie"}', "chosen": "positive", "rejected": "negative"}]
    records, fmt = load(write_jsonl(tmp_path / "p.jsonl", rows))
    assert fmt == "preference"
    assert records[0].chosen == (Message("assistant", '{"name": "Bob", "age": 3}'),)
    assert records[0].rejected == (Message("assistant", '[{"id": 1}]'),)
    assert records[1].messages == (Message("user", '{"task": "classify", "text": "great movie"}'),)
    kto, fmt = load(write_jsonl(tmp_path / "k.jsonl", [{"prompt": "Extract: Al is 4.", "completion": '{"name": "Al"}',
                                                         "label": False}]))
    assert fmt == "kto" and kto[0].messages[-1] == Message("assistant", '{"name": "Al"}')
    # a string that does hold messages is still read as messages
    turns = '[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]'
    records, _ = load(write_jsonl(tmp_path / "m.jsonl", [{"chosen": turns, "rejected": turns.replace("Hello", "No")}]))
    assert records[0].messages == (Message("user", "Hi"),) and records[0].chosen[0].content == "Hello"


def test_kto_messages_and_prompt_completion() -> None:
    records, fmt = load(FIX / "kto.jsonl")
    assert fmt == "kto" and [r.label for r in records] == [True, False, True]
    assert records[2].messages == (Message("user", "Capital of Spain?"), Message("assistant", "Madrid."))


def test_text_jsonl_and_txt_units() -> None:
    records, fmt = load(FIX / "text.jsonl")
    assert fmt == "text"
    assert [r.text for r in records] == ["Pretraining text number one.", "Pretraining text number two."]
    lines, _ = load(FIX / "text.txt")
    assert [(r.text, r.source.line) for r in lines] == [
        ("The first document is one line.", 1),
        ("The second document", 3),
        ("spans two lines.", 4),
        ("The third line.", 5),
    ]
    paragraphs, _ = load(FIX / "text.txt", text_unit="paragraph")
    assert [(r.text, r.source.line) for r in paragraphs] == [
        ("The first document is one line.", 1), ("The second document\nspans two lines.\nThe third line.", 3),
    ]
    whole, _ = load(FIX / "text.txt", text_unit="file")
    assert len(whole) == 1 and whole[0].text == (FIX / "text.txt").read_text()


def test_classification_csv_to_chat() -> None:
    labels = ["positive", "negative", "neutral"]
    records, fmt = load(FIX / "classification.csv", labels=labels)
    assert fmt == "classification"
    assert [r.label for r in records] == labels
    first = records[0]
    assert first.kind == "sft" and first.source.line == 2
    prompt = "Classify the text as one of: positive, negative, neutral."
    assert first.messages[0].content == f"{prompt}\n\nI loved it, truly."
    assert first.messages[1] == Message("assistant", "positive")
    custom, _ = load(FIX / "classification.csv", instruction="Sentiment?")
    assert custom[1].messages[0].content == "Sentiment?\n\nIt was awful."


def test_rag_answer_and_abstention() -> None:
    records, fmt = load(FIX / "rag.jsonl", abstention="Not in the context.")
    assert fmt == "rag"
    assert [r.meta["abstention"] for r in records] == [False, True, True]
    assert records[0].messages[1].content == "Oslo"
    assert records[1].messages[1].content == "Not in the context."
    user = records[1].messages[0].content
    assert "Passage one about rivers.\n\nPassage two about lakes." in user
    assert user.endswith("Question: Who won the 1990 World Cup?")


def test_field_remapping(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [{"q": "Why?", "ctx": "Because.", "extra": "x", "a": "It is so."}])
    records, _ = load(path, type="alpaca", field_instruction="q", field_input="ctx", field_output="a")
    assert [m.content for m in records[0].messages] == ["Why?\nBecause.", "It is so."]
    records, fmt = load(path, field_context="ctx", field_question="q", field_answer="a")
    assert fmt == "rag" and records[0].messages[1].content == "It is so."


def test_role_aliases_and_row_weight(tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "developer", "content": "S"}, {"role": "human", "content": "U"},
                          {"role": "Assistant", "content": "A"}], "w": 2.5}]
    records, _ = load(write_jsonl(tmp_path / "a.jsonl", rows), field_weight="w")
    assert [m.role for m in records[0].messages] == ["system", "user", "assistant"]
    assert records[0].weight == 2.5


def test_prompt_completion_is_chat(tmp_path: Path) -> None:
    records, fmt = load(write_jsonl(tmp_path / "pc.jsonl", [{"prompt": "P", "completion": "C"}]))
    assert fmt == "chat" and records[0].messages == (Message("user", "P"), Message("assistant", "C"))


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"messages": []}, "chat"),
        ({"conversations": []}, "sharegpt"),
        ({"instruction": "", "output": ""}, "alpaca"),
        ({"prompt": "", "chosen": "", "rejected": ""}, "preference"),
        ({"chosen_messages": [], "rejected_messages": []}, "preference"),
        ({"conversations": [], "chosen": {}, "rejected": {}}, "preference"),
        ({"messages": [], "label": True}, "kto"),
        ({"prompt": "", "completion": "", "label": True}, "kto"),
        ({"text": ""}, "text"),
        ({"text": "", "label": "x"}, "classification"),
        ({"context": "", "question": "", "answer": ""}, "rag"),
    ],
)
def test_detection(row: dict[str, Any], expected: str) -> None:
    from tunesmith.data.formats import best_format

    assert best_format(row, DatasetSpec(path="x")) == expected


def test_record_to_dict_is_json() -> None:
    records, _ = load(FIX / "chat.jsonl")
    data = json.loads(json.dumps(records[1].to_dict()))
    assert data["messages"][1] == {"role": "assistant", "content": "4", "reasoning_content": "Add them.", "weight": 1.0}
    assert data["source"]["line"] == 2 and data["kind"] == "sft"


def test_plain_strings_that_look_like_json_stay_text(tmp_path: Path) -> None:
    rows = [
        {"prompt": "[INST] pick one [/INST]", "chosen": "[1, 2]", "rejected": "{not json"},
        {"prompt": '[{"role": "user", "content": "as JSON"}]', "chosen": "a", "rejected": "b"},
    ]
    records, _ = load(write_jsonl(tmp_path / "p.jsonl", rows))
    assert records[0].messages == (Message("user", "[INST] pick one [/INST]"),)
    assert records[0].chosen == (Message("assistant", "[1, 2]"),)
    assert records[0].rejected == (Message("assistant", "{not json"),)
    assert records[1].messages == (Message("user", "as JSON"),)


def test_cpt_reads_a_text_column_as_text_whatever_sits_beside_it(tmp_path: Path) -> None:
    """Rows of text + label were detected as classification (text -> chat) and cpt refused them as
    "sft rows"; for a method that trains on raw text, a text column is the text."""
    from tunesmith.config import DatasetSpec
    from tunesmith.data import ingest

    path = tmp_path / "tl.jsonl"
    path.write_text('{"text": "hello world", "label": "x"}\n{"text": "more text", "label": "y"}\n')
    cpt = ingest([DatasetSpec(path=str(path))], method="cpt")
    assert cpt.formats == {str(path): "text"} and [r.text for r in cpt.records] == ["hello world", "more text"]
    sft = ingest([DatasetSpec(path=str(path))], method="sft")
    assert sft.formats == {str(path): "classification"}  # sft: detected as before
