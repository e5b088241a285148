"""encode_chat / encode_preference: exact trained spans for the hard template behaviours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tiny import build_tokenizer

from tunesmith.data.records import Message, ToolCall
from tunesmith.tokenize import TemplateMismatch, encode_chat, encode_preference
from tunesmith.tokenize.chat import IGNORE
from tunesmith.tokenize.preview import runs
from tunesmith.tokenize.tokenizer import template_text

CHATML = ["<|im_start|>", "<|im_end|>"]
CONVERSATION = (
    Message("system", "Be brief."),
    Message("user", "What is the capital of France?"),
    Message("assistant", "Paris is the capital."),
    Message("user", "And Germany?"),
    Message("assistant", "Berlin."),
)


def _tok(tmp_path: Path, template: str, specials: list[str] = CHATML, name: str = "tok", **kw: Any) -> Any:
    return build_tokenizer(tmp_path / name, template, specials, **kw)


def _spans(tokenizer: Any, enc: Any) -> list[str]:
    return [tokenizer.decode(enc.input_ids[a:b]) for a, b, trained in runs(enc.labels) if trained]


def test_chatml_exact_render_and_mask(tmp_path: Path) -> None:
    tok = _tok(tmp_path, template_text("chatml"))
    enc = encode_chat(CONVERSATION, tok)
    assert enc.text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\nParis is the capital.<|im_end|>\n<|im_start|>user\nAnd Germany?<|im_end|>\n"
        "<|im_start|>assistant\nBerlin.<|im_end|>\n"
    )
    assert _spans(tok, enc) == ["Paris is the capital.<|im_end|>", "Berlin.<|im_end|>"]
    trained = [t for t in enc.labels if t != IGNORE]
    expected = tok("Paris is the capital.<|im_end|>Berlin.<|im_end|>", add_special_tokens=False)["input_ids"]
    assert trained == expected
    assert enc.turn_spans[0] is None and enc.turn_spans[2] == enc.spans[0] and enc.turn_spans[4] == enc.spans[1]


def test_train_on_turns_last_and_loss_weight_zero(tmp_path: Path) -> None:
    tok = _tok(tmp_path, template_text("chatml"))
    assert _spans(tok, encode_chat(CONVERSATION, tok, train_on_turns="last")) == ["Berlin.<|im_end|>"]
    muted = list(CONVERSATION)
    muted[4] = Message("assistant", "Berlin.", weight=0)
    enc = encode_chat(muted, tok)
    assert _spans(tok, enc) == ["Paris is the capital.<|im_end|>"]
    assert all(t == IGNORE for t in encode_chat(muted, tok, train_on_turns="last").labels)


def test_train_on_inputs_trains_everything_through_the_last_closer(tmp_path: Path) -> None:
    tok = _tok(tmp_path, template_text("chatml"))
    enc = encode_chat(CONVERSATION, tok, train_on_inputs=True)
    assert enc.labels[:-1] == enc.input_ids[:-1]
    assert tok.decode(enc.input_ids[-1:]) == "\n" and enc.labels[-1] == IGNORE


def test_tool_calls_and_reasoning_are_trained_tool_results_are_not(tmp_path: Path) -> None:
    tok = _tok(tmp_path, template_text("chatml"))
    tools = ({"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}},)
    messages = (
        Message("user", "Weather in Paris?"),
        Message("assistant", "", tool_calls=(ToolCall("weather", {"city": "Paris"}),)),
        Message("tool", "sunny"),
        Message("assistant", "It is sunny.", reasoning="The tool said sunny."),
    )
    spans = _spans(tok, encode_chat(messages, tok, tools=tools))
    assert spans == [
        '<tool_call>\n{"name": "weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
        "<think>\nThe tool said sunny.\n</think>\n\nIt is sunny.<|im_end|>",
    ]


def test_default_system_prompt_and_date_injection(tmp_path: Path) -> None:
    template = (
        "{{- '<|im_start|>system\\nYou are a bot. Today is ' + strftime_now('%d %b %Y') + '<|im_end|>\\n' }}"
        "{%- for m in messages %}{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    )
    tok = _tok(tmp_path, template)
    assert _spans(tok, encode_chat(CONVERSATION[1:], tok)) == ["Paris is the capital.<|im_end|>", "Berlin.<|im_end|>"]


def test_gemma_folds_system_and_renames_assistant(tmp_path: Path) -> None:
    tok = _tok(tmp_path, template_text("gemma"), ["<start_of_turn>", "<end_of_turn>"])
    enc = encode_chat(CONVERSATION, tok)
    assert "<start_of_turn>user\nBe brief.\n\nWhat is" in enc.text and "<start_of_turn>model\n" in enc.text
    assert _spans(tok, enc) == ["Paris is the capital.<end_of_turn>", "Berlin.<end_of_turn>"]


def test_template_that_rewrites_earlier_turns_uses_the_full_render(tmp_path: Path) -> None:
    """Reasoning shown only after the last user turn (Qwen3-style): prefix renders of the first
    answer include its reasoning, the full render does not; the span follows the full render."""
    template = (
        "{%- set ns = namespace(last=0) %}{%- for m in messages %}{%- if m.role == 'user' %}"
        "{%- set ns.last = loop.index0 %}{%- endif %}{%- endfor %}"
        "{%- for m in messages %}{{- '<|im_start|>' + m.role + '\\n' }}"
        "{%- if m.role == 'assistant' and loop.index0 > ns.last %}"
        "{{- '<think>' + m.reasoning_content + '</think>' }}{%- endif %}"
        "{{- m.content + '<|im_end|>\\n' }}{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    )
    tok = _tok(tmp_path, template)
    messages = (
        Message("user", "What is the capital of France?"),
        Message("assistant", "Paris.", reasoning="France has Paris"),
        Message("user", "And Germany?"),
        Message("assistant", "Berlin.", reasoning="Germany has Berlin"),
    )
    enc = encode_chat(messages, tok)
    assert "France has Paris" not in enc.text
    assert _spans(tok, enc) == ["Paris.<|im_end|>", "<think>Germany has Berlin</think>Berlin.<|im_end|>"]


@pytest.mark.parametrize("prompt_space", ["", " "], ids=["space-in-answer", "space-in-prompt"])
def test_header_content_boundary_is_mapped_by_offsets(tmp_path: Path, prompt_space: str) -> None:
    """'ASSISTANT: the' tokenizes as 'ĠThe' across the header/content boundary; the span is
    mapped by character offsets so that token is trained and no header token is."""
    template = (
        "{%- for m in messages %}{%- if m.role == 'user' %}{{- 'USER: ' + m.content + '\\n' }}"
        "{%- else %}{{- 'ASSISTANT: ' + m.content + eos_token + '\\n' }}{%- endif %}{%- endfor %}"
        "{%- if add_generation_prompt %}{{- 'ASSISTANT:" + prompt_space + "' }}{%- endif %}"
    )
    tok = _tok(tmp_path, template, [])
    messages = (Message("user", "hi"), Message("assistant", "the capital"))
    enc = encode_chat(messages, tok)
    first = enc.spans[0][0]
    assert tok.convert_ids_to_tokens(enc.input_ids[first]) == "Ġthe"
    assert _spans(tok, enc) == [" the capital</s>"]
    prompt_alone = tok("USER: hi\nASSISTANT: ", add_special_tokens=False)["input_ids"]
    assert enc.input_ids[: len(prompt_alone)] != prompt_alone  # the boundary really tokenizes differently


def test_template_without_closer_gets_eos_on_the_last_turn_only(tmp_path: Path) -> None:
    template = (
        "{%- for m in messages %}{{- '### ' + m.role + ':\\n' + m.content + '\\n\\n' }}{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '### assistant:\\n' }}{%- endif %}"
    )
    tok = _tok(tmp_path, template, [])
    enc = encode_chat(CONVERSATION, tok)
    assert enc.appended_eos and enc.input_ids[-1] == tok.eos_token_id
    assert _spans(tok, enc) == ["Paris is the capital.", "Berlin.</s>"]
    muted = (*CONVERSATION[:4], Message("assistant", "Berlin.", weight=0))
    with pytest.raises(TemplateMismatch, match="does not end with an end-of-turn token"):
        encode_chat(muted, tok)


def test_template_that_hides_content_is_an_error_not_a_wrong_mask(tmp_path: Path) -> None:
    template = (
        "{%- for m in messages %}{{- '<|im_start|>' + m.role + '\\n' + (m.content | upper) + '<|im_end|>\\n' }}"
        "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    )
    tok = _tok(tmp_path, template)
    with pytest.raises(TemplateMismatch, match="message 2 \\(assistant\\): cannot locate"):
        encode_chat(CONVERSATION, tok)


def test_template_rejection_is_reported(tmp_path: Path) -> None:
    tok = _tok(tmp_path, template_text("gemma"), ["<start_of_turn>", "<end_of_turn>"])
    with pytest.raises(TemplateMismatch, match="alternate"):
        encode_chat((Message("user", "a"), Message("user", "b"), Message("assistant", "c")), tok)


def test_preference_shares_the_prompt_and_ends_each_answer_with_the_closer(tmp_path: Path) -> None:
    tok = _tok(tmp_path, template_text("chatml"))
    enc = encode_preference(CONVERSATION[:2], (Message("assistant", "Paris."),), (Message("assistant", "Lyon."),), tok)
    assert tok.decode(enc.prompt_ids).endswith("<|im_start|>assistant\n")
    assert tok.decode(enc.chosen_ids) == "Paris.<|im_end|>"
    assert tok.decode(enc.rejected_ids) == "Lyon.<|im_end|>"
