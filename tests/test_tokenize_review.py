"""Tokenization review: defects found by checking labels, preference prompts and template checks
against the real chat templates in ../shared and tunesmith's built-ins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import SHARED
from tiny import SPECIAL_EOS, build_tokenizer

from tunesmith.config import config_from_dict
from tunesmith.data import DataResult
from tunesmith.data.records import Message, Record, Source, ToolCall
from tunesmith.errors import ConfigError
from tunesmith.tokenize import TemplateMismatch, encode_chat, encode_preference, run
from tunesmith.tokenize.tokenizer import template_text

VICUNA = SHARED / "fixtures" / "chat_templates" / "chat_templates" / "vicuna.jinja"
CHATML = ["<|im_start|>", "<|im_end|>"]
TOOLS = ({"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}},)
QUESTION = (Message("user", "What is the weather in Paris?"),)


def test_preference_completion_with_a_tool_turn_inside_is_refused(tmp_path: Path) -> None:
    """TRL trains every completion token: a chosen side [call, tool result, answer] put the tool's
    result and the turn headers into chosen_ids, so DPO trained the tool's output as the model's."""
    tok = build_tokenizer(tmp_path / "tok", template_text("chatml"), CHATML)
    call = Message("assistant", "", tool_calls=(ToolCall("weather", {"city": "Paris"}),))
    chosen = (call, Message("tool", "TOOL RESULT sunny"), Message("assistant", "It is sunny."))
    with pytest.raises(TemplateMismatch, match="holds turns that are not the assistant's"):
        encode_preference(QUESTION, chosen, (Message("assistant", "No idea."),), tok, tools=TOOLS)
    single = encode_preference(QUESTION, (call,), (Message("assistant", "No idea."),), tok, tools=TOOLS)
    assert tok.decode(single.chosen_ids).endswith("</tool_call><|im_end|>")  # one call turn is still fine


@pytest.mark.skipif(not VICUNA.is_file(), reason="../shared chat templates are absent")
@pytest.mark.parametrize("rejected", ["42, I think", "Zzz maybe"])
def test_preference_prompt_is_the_shared_prefix_when_header_space_merges(tmp_path: Path, rejected: str) -> None:
    """vicuna writes 'ASSISTANT: ' + answer; a sentencepiece tokenizer merges that space into '▁Paris' but
    not into '▁' '4': every such pair was refused ('the prompt tokenizes differently')."""
    tok = build_tokenizer(tmp_path / "tok", VICUNA.read_text("utf-8"), style="sentencepiece")
    answers = {"chosen": "Paris is the capital.", "rejected": rejected}
    enc = encode_preference(QUESTION, (Message("assistant", answers["chosen"]),),
                            (Message("assistant", rejected),), tok)
    for side, ids in (("chosen", enc.chosen_ids), ("rejected", enc.rejected_ids)):
        full = encode_chat((*QUESTION, Message("assistant", answers[side])), tok)
        assert enc.prompt_ids + ids == full.input_ids[: len(enc.prompt_ids) + len(ids)]
        assert tok.decode(ids).strip() == answers[side] + SPECIAL_EOS
        assert ids[-1] == tok.eos_token_id
    assert tok.decode(enc.prompt_ids, skip_special_tokens=False).endswith("ASSISTANT:")  # the header, whole


def _reasoning_run(tmp_path: Path, template: str) -> Any:
    build_tokenizer(tmp_path / "tok", None, CHATML)
    messages = (Message("user", "What is 2+2?"), Message("assistant", "4", reasoning="two plus two is four"))
    records = [Record("sft", Source("data.jsonl", 1, 1), "chat", (Message("user", "hi"), Message("assistant", "Hi."))),
               Record("sft", Source("data.jsonl", 2, 2), "chat", messages)]
    cfg = config_from_dict({"base_model": str(tmp_path / "tok"), "chat_template": template,
                            "datasets": ["data.jsonl"], "output_dir": str(tmp_path / "out")})
    return run(cfg, DataResult(train=records, eval=[], test=[], fingerprint="t", formats={}))


def test_reasoning_under_a_template_that_drops_it_is_refused(tmp_path: Path) -> None:
    """qwen's template renders no reasoning_content: the rows' reasoning vanished from training silently."""
    with pytest.raises(ConfigError, match=r"chat_template: qwen leaves reasoning out of its render "
                                          r"\(data.jsonl:2 has some\)"):
        _reasoning_run(tmp_path, "qwen")


def test_reasoning_under_a_template_that_renders_it_is_trained(tmp_path: Path) -> None:
    result = _reasoning_run(tmp_path, "chatml")
    row = result.samples[1]
    trained = result.tokenizer.decode([t for t in row["labels"] if t != -100])
    assert trained == "<think>\ntwo plus two is four\n</think>\n\n4<|im_end|>"
