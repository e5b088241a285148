"""tokenize.run: padding by position, truncation policies, bad rows, cache, cpt windows, dpo."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from tiny import build_tokenizer

from tunesmith.config import config_from_dict
from tunesmith.data import DataResult
from tunesmith.data.records import Message, Record, Source
from tunesmith.errors import DataError
from tunesmith.tokenize import Collator, run
from tunesmith.tokenize.chat import IGNORE
from tunesmith.tokenize.cpt import windows
from tunesmith.tokenize.preview import runs
from tunesmith.tokenize.tokenizer import template_text

CHATML = ["<|im_start|>", "<|im_end|>"]


def _chat(row: int, *pairs: str, system: str | None = None, weight: float | None = None) -> Record:
    messages = [Message("system", system)] if system else []
    for k, text in enumerate(pairs):
        last = k == len(pairs) - 1
        messages.append(Message("user" if k % 2 == 0 else "assistant", text, weight=weight if last else None))
    return Record("sft", Source("data.jsonl", row, row), "chat", tuple(messages))


def _data(train: list[Record], eval_: list[Record] | None = None) -> DataResult:
    return DataResult(train=train, eval=eval_ or [], test=[], fingerprint="test", formats={})


def _config(tmp_path: Path, **overrides: Any) -> Any:
    base = {"base_model": str(tmp_path / "tok"), "chat_template": "chatml", "datasets": ["data.jsonl"],
            "output_dir": str(tmp_path / "out")}
    return config_from_dict({**base, **overrides})


@pytest.fixture
def chatml_tok(tmp_path: Path) -> Any:
    return build_tokenizer(tmp_path / "tok", None, CHATML)


@pytest.mark.parametrize("pad", ["</s>", None], ids=["pad==eos", "no-pad"])
def test_padding_is_masked_by_position_so_eos_stays_trained(tmp_path: Path, pad: str | None) -> None:
    tok = build_tokenizer(tmp_path / "tok", None, pad_token=pad)
    assert tok.pad_token_id == (tok.eos_token_id if pad else None)
    records = [_chat(1, "hi", "Paris is the capital."), _chat(2, "What is the capital of France?", "Paris.")]
    result = run(_config(tmp_path, chat_template="zephyr"), _data(records))
    batch = Collator(tok.pad_token_id)(result.train)
    eos = tok.eos_token_id
    for b, row in enumerate(result.train):
        n = len(row["input_ids"])
        assert batch["labels"][b, : n].tolist() == row["labels"]
        assert row["labels"][-2] == eos  # each answer ends with a trained EOS (then the template's newline)
        assert batch["attention_mask"][b, :n].all() and not batch["attention_mask"][b, n:].any()
        assert (batch["labels"][b, n:] == IGNORE).all()
    short = min(range(2), key=lambda b: len(result.train[b]["input_ids"]))
    assert (batch["labels"][short] == eos).sum() == sum(1 for t in result.train[short]["labels"] if t == eos)
    if pad:
        assert (batch["input_ids"][short] == eos).sum() > (batch["labels"][short] == eos).sum()  # pads are eos ids


def test_truncation_drop_counts_and_reports(tmp_path: Path, chatml_tok: Any) -> None:
    long_answer = " ".join(["the quick brown fox jumps over the lazy dog"] * 12)
    records = [_chat(1, "hi", "Paris."), _chat(2, "hi", long_answer), _chat(3, "hello", "Berlin.")]
    result = run(_config(tmp_path, sequence_len=48), _data(records))
    assert result.sources == ["data.jsonl:1", "data.jsonl:3"]
    assert result.stats["dropped_rows"] == 1 and result.stats["dropped"] == {"too_long": 1}
    assert result.stats["dropped_tokens"] > 48 and "data.jsonl:2: too_long" in result.stats["drop_examples"][0]


def test_truncation_error_names_the_row(tmp_path: Path, chatml_tok: Any) -> None:
    records = [_chat(1, "hi", "Paris."), _chat(7, "hi", " ".join(["the quick brown fox"] * 20))]
    with pytest.raises(DataError, match=r"data.jsonl:7: messages \d+ tokens > sequence_len 40") as info:
        run(_config(tmp_path, sequence_len=40, truncation="error", on_bad_rows="skip"), _data(records))
    # on_bad_rows: skip does not drop rows too long under truncation: error: the hint says what does
    assert "on_bad_rows" not in str(info.value)
    assert str(info.value).endswith("(raise sequence_len, or set truncation: drop or truncate_prompt, for the rows "
                                    "longer than sequence_len)")


def test_truncate_prompt_removes_whole_earlier_turns_keeping_system(tmp_path: Path, chatml_tok: Any) -> None:
    filler = " ".join(["the quick brown fox jumps over the lazy dog"] * 3)
    many = _chat(1, filler, filler, "What is the capital of France?", "Paris is the capital.", system="Be brief.")
    single = _chat(2, " ".join(["the lazy dog"] * 40), "Paris.")
    result = run(_config(tmp_path, sequence_len=64, truncation="truncate_prompt"), _data([many, single]))
    assert result.stats["truncated_rows"] == 1 and result.stats["dropped"] == {"too_long": 1}
    row = result.samples[0]
    text = result.tokenizer.decode(row["input_ids"])
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\nParis is the capital.<|im_end|>\n"
    )
    untruncated = run(_config(tmp_path, sequence_len=512), _data([many])).samples[0]
    assert result.stats["truncated_tokens"] == len(untruncated["input_ids"]) - len(row["input_ids"])


def test_fully_masked_row_is_an_error_or_a_counted_drop(tmp_path: Path, chatml_tok: Any) -> None:
    records = [_chat(1, "hi", "Paris."), _chat(2, "hi", "muted", weight=0)]
    with pytest.raises(DataError, match="data.jsonl:2: messages no trained token: every label is -100"):
        run(_config(tmp_path), _data(records))
    result = run(_config(tmp_path, on_bad_rows="skip"), _data(records))
    assert result.stats["rows"] == 1 and result.stats["dropped"] == {"no_trained_token": 1}
    assert [(r["line"], r["field"], r["reason"].split(":")[0]) for r in result.rejected] == [
        (2, "messages", "no_trained_token")]
    assert all(any(t != IGNORE for t in row["labels"]) for row in result.train)


def test_template_rejection_is_a_row_error(tmp_path: Path) -> None:
    build_tokenizer(tmp_path / "tok", None, ["<start_of_turn>", "<end_of_turn>"])
    bad = Record("sft", Source("data.jsonl", 4, 4), "chat", (Message("assistant", "first"), Message("user", "x")))
    with pytest.raises(DataError, match="data.jsonl:4: messages the chat template cannot render"):
        run(_config(tmp_path, chat_template="gemma"), _data([_chat(1, "hi", "Paris."), bad]))


def test_cache_is_reused_and_invalidated_by_template_or_settings(
    tmp_path: Path, chatml_tok: Any, caplog: pytest.LogCaptureFixture
) -> None:
    data = _data([_chat(1, "hi", "Paris."), _chat(2, "hello", "Berlin.")])
    first = run(_config(tmp_path), data)
    with caplog.at_level(logging.INFO, logger="tunesmith.tokenize"):
        second = run(_config(tmp_path), data)
    assert not first.cache_hit and second.cache_hit and second.cache_dir == first.cache_dir
    assert "reusing the cached tokenized dataset" in caplog.text
    assert second.train == first.train and second.stats == first.stats
    edited = tmp_path / "edited.jinja"
    chatml = template_text("chatml")
    edited.write_text(chatml.replace("<|im_start|>' + message.role", "<|im_start|>' + message.role + ' '"))
    changed = run(_config(tmp_path, chat_template=str(edited)), data)
    assert not changed.cache_hit and changed.cache_dir != first.cache_dir and changed.fingerprint != first.fingerprint
    assert changed.train != first.train
    assert not run(_config(tmp_path, train_on_inputs=True), data).cache_hit
    assert not run(_config(tmp_path), _data([_chat(1, "hi", "Lyon.")])).cache_hit


def test_windows_overlap_by_stride_and_drop_short_tails() -> None:
    stream = list(range(25))
    assert windows(stream, 10) == [list(range(10)), list(range(10, 20)), list(range(20, 25))]
    assert windows(stream, 10, min_window=6) == [list(range(10)), list(range(10, 20))]
    overlapped = windows(stream, 10, stride=4, min_window=6)
    assert overlapped == [list(range(0, 10)), list(range(6, 16)), list(range(12, 22)), list(range(18, 25))]


def test_cpt_joins_documents_with_eos_and_trains_every_token(tmp_path: Path, chatml_tok: Any) -> None:
    docs = ["the quick brown fox jumps over the lazy dog", "hello world", "what is the capital of france"]
    records = [Record("text", Source("c4.jsonl", i + 1, i + 1), "text", text=t) for i, t in enumerate(docs)]
    tok = chatml_tok
    stream = []
    for text in docs:
        stream += tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    result = run(_config(tmp_path, method="cpt", sequence_len=8, stride=2, min_window=4), _data(records))
    assert [row["input_ids"] for row in result.train] == windows(stream, 8, stride=2, min_window=4)
    assert all(row["labels"] == row["input_ids"] for row in result.train)
    assert result.train[0]["input_ids"][:8] == stream[:8] and result.train[1]["input_ids"][:2] == stream[6:8]
    assert result.stats["documents"] == 3 and result.stats["trained_share"] == 1.0


def test_dpo_rows_in_trl_format(tmp_path: Path, chatml_tok: Any) -> None:
    record = Record(
        "preference", Source("dpo.jsonl", 1, 1), "preference",
        messages=(Message("user", "What is the capital of France?"),),
        chosen=(Message("assistant", "Paris."),), rejected=(Message("assistant", "Lyon, I think."),),
    )
    result = run(_config(tmp_path, method="dpo"), _data([record]))
    row = result.train[0]
    assert set(row) == {"prompt_ids", "chosen_ids", "rejected_ids"}
    decode = result.tokenizer.decode
    assert decode(row["chosen_ids"]) == "Paris.<|im_end|>" and decode(row["rejected_ids"]) == "Lyon, I think.<|im_end|>"
    assert decode(row["prompt_ids"]).endswith("France?<|im_end|>\n<|im_start|>assistant\n")


def test_system_prompt_is_added_when_a_conversation_has_none(tmp_path: Path, chatml_tok: Any) -> None:
    data = _data([_chat(1, "hi", "Paris."), _chat(2, "hi", "Berlin.", system="Own system.")])
    result = run(_config(tmp_path, system_prompt="Default system."), data)
    texts = [result.tokenizer.decode(row["input_ids"]) for row in result.samples]
    assert texts[0].startswith("<|im_start|>system\nDefault system.<|im_end|>")
    assert texts[1].startswith("<|im_start|>system\nOwn system.<|im_end|>") and "Default" not in texts[1]
    decode = result.tokenizer.decode
    spans = [[decode(r["labels"][a:b]) for a, b, on in runs(r["labels"]) if on] for r in result.samples]
    assert spans == [["Paris.<|im_end|>"], ["Berlin.<|im_end|>"]]
