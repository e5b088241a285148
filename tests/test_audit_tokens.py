"""Token checks with a real (tiny, local) tokenizer and tunesmith's tokenization engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from audit_rows import chat, clean_chat, finding, fired, replace, where
from tiny import build_tokenizer

from tunesmith.config import config_from_dict
from tunesmith.audit import audit_records
from tunesmith.audit.tokens import TokenizerHooks
from tunesmith.data.records import Message, Record, Source
from tunesmith.tokenize.tokenizer import template_text

# closes only the conversation (EOS after the last message): earlier assistant turns never stop
END_ONLY = (
    "{% for m in messages %}{{ '<|' + m.role + '|>\n' + m.content + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ '</s>' }}{% endif %}"
)
# closes no turn at all: the engine appends EOS to the last one
NO_CLOSE = "{% for m in messages %}{{ m.role + ': ' + m.content + '\n' }}{% endfor %}"
NO_TOOLS = (
    "{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('tool turns are not supported') }}"
    "{% endif %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CONFIG = {"base_model": "m", "datasets": [{"path": "train.jsonl"}]}


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root: Path = tmp_path_factory.mktemp("tok")
    im = ["<|im_start|>", "<|im_end|>"]
    return {
        "chatml": build_tokenizer(root / "chatml", template_text("chatml"), im),
        "end_only": build_tokenizer(root / "end_only", END_ONLY),
        "no_close": build_tokenizer(root / "no_close", NO_CLOSE),
        "no_tools": build_tokenizer(root / "no_tools", NO_TOOLS, im),
    }


def hooks(tokenizer: Any, **config: Any) -> TokenizerHooks:
    return TokenizerHooks(tokenizer, config_from_dict({**CONFIG, **config}))


def two_turns(row: int) -> Record:
    return Record("sft", Source("train.jsonl", row, row), "chat", (
        Message("user", "Hello, who are you?"), Message("assistant", "I am the assistant."),
        Message("user", "And what can you do?"), Message("assistant", "I can answer questions."),
    ))


@pytest.mark.parametrize("name", ["chatml", "no_close"])
def test_batch_lengths_equal_the_engine(tokenizers: dict[str, Any], name: str) -> None:
    h = hooks(tokenizers[name], system_prompt="Be brief.")
    records = clean_chat(12) + ([two_turns(99)] if name == "chatml" else [])
    assert h.lengths(records) == [len(h.encode(r).input_ids) for r in records]
    assert name == "chatml" or h.encode(records[0]).appended_eos  # no_close: the engine adds EOS


def test_clean_data_with_a_closing_template(tokenizers: dict[str, Any]) -> None:
    report = audit_records(clean_chat(), tokens=hooks(tokenizers["chatml"]))
    assert report.findings == [] and report.stats["token_lengths_exact"] is True
    assert report.stats["skipped_checks"] == {} and report.stats["templated_rows_checked"] == 120


def test_missing_eos_on_unclosed_turns_and_untrained_rows(tokenizers: dict[str, Any]) -> None:
    untrained = Record("sft", Source("train.jsonl", 0, 0), "chat", (
        Message("user", "Say nothing, case 0?"), Message("assistant", "Nothing to learn here at all.", weight=0.0)))
    rows = replace(clean_chat(), {4: two_turns(0), 8: untrained})
    found = finding(audit_records(rows, tokens=hooks(tokenizers["end_only"])), "missing_eos")
    assert set(found.locations) == where(rows, [4, 8]) and found.severity == "error"
    assert "1 row(s) have no trained token" in found.message
    without = rows[:4] + rows[5:8] + rows[9:]
    assert "missing_eos" not in fired(audit_records(without, tokens=hooks(tokenizers["end_only"])))
    assert "missing_eos" not in fired(audit_records(replace(clean_chat(), {4: two_turns(0)}),
                                                    tokens=hooks(tokenizers["chatml"])))


def test_template_error(tokenizers: dict[str, Any]) -> None:
    tool_row = Record("sft", Source("train.jsonl", 0, 0), "chat", (
        Message("user", "Weather in Paris, case 1?"), Message("tool", "sunny, 21 degrees"),
        Message("assistant", "It is sunny and 21 degrees in Paris today.")))
    rows = replace(clean_chat(), {6: tool_row})
    found = finding(audit_records(rows, tokens=hooks(tokenizers["no_tools"])), "template_error")
    assert set(found.locations) == where(rows, [6]) and "tool turns are not supported" in found.message


def test_over_length_is_exact_at_the_limit(tokenizers: dict[str, Any]) -> None:
    h = hooks(tokenizers["chatml"])
    rows = clean_chat()
    lengths = h.lengths(rows)
    limit = sorted(lengths)[-3]  # the two longest rows are over, the third exactly at the limit
    report = audit_records(rows, config=config_from_dict({**CONFIG, "sequence_len": limit}),
                           tokens=hooks(tokenizers["chatml"], sequence_len=limit))
    over = finding(report, "over_length")
    assert set(over.locations) == where(rows, [i for i, n in enumerate(lengths) if n > limit])
    assert over.count == sum(n > limit for n in lengths) >= 1
    assert "will be dropped" in over.message


def test_system_prompt_is_counted(tokenizers: dict[str, Any]) -> None:
    rows = [chat(1, "Hi there, case 1?", "Hello to you as well.")]
    plain = hooks(tokenizers["chatml"]).lengths(rows)[0]
    with_system = hooks(tokenizers["chatml"], system_prompt="You are a very careful assistant.").lengths(rows)[0]
    assert with_system > plain
