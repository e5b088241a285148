"""The audit renders each row once and shares the render with tokenization: on every real chat
template in ../shared, the results equal the previous path's exactly (a row rendered again for each
use, token lengths counted in the calling thread): renders, encodings (ids, labels, spans),
token lengths, audit findings and stats, and tokenization's rows with and without the memo."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from audit_rows import clean_chat
from conftest import SHARED
from test_tokenize_conformance import _special_tokens
from tiny import build_tokenizer

from tunesmith.audit import audit_records
from tunesmith.audit.tokens import TokenizerHooks
from tunesmith.config import config_from_dict
from tunesmith.data.records import Message, Record, Source
from tunesmith.errors import TunesmithError
from tunesmith.tokenize.chat import EncodeMemo
from tunesmith.tokenize.counts import TokenCounter, count_tokens
from tunesmith.tokenize.rows import tokenize_chat_split, with_system_prompt
from tunesmith.tokenize.spans import TemplateMismatch, render, render_many

TEMPLATES = SHARED / "fixtures" / "chat_templates" / "chat_templates"
CONFIG = {"base_model": "m", "datasets": [{"path": "train.jsonl"}]}


def _template_files() -> list[Path]:
    return sorted(TEMPLATES.glob("*.jinja")) if TEMPLATES.is_dir() else []


@pytest.fixture(scope="module", params=_template_files(), ids=lambda p: p.stem)
def tokenizer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    text = request.param.read_text("utf-8")
    return build_tokenizer(tmp_path_factory.mktemp(request.param.stem), text, _special_tokens(text))


def _row(n: int, *messages: Message) -> Record:
    return Record("sft", Source("train.jsonl", n, n), "chat", tuple(messages))


def _rows() -> list[Record]:
    """Clean rows, a system prompt, three turns, and rows templates reject (two users, assistant first)."""
    three = (Message("user", "What is the capital of France?"), Message("assistant", "  Paris.\n"),
             Message("user", "And of Germany?"), Message("assistant", "Berlin.\nA big city."),
             Message("user", "Thanks!"), Message("assistant", "You are welcome"))
    odd = [_row(900, Message("user", "one?"), Message("user", "two?"), Message("assistant", "Both.")),
           _row(901, Message("assistant", "I speak first."), Message("user", "ok"), Message("assistant", "Fine.")),
           _row(902, Message("system", "Be terse."), Message("user", "Hi?"), Message("assistant", "Hello."))]
    return [*clean_chat(30), _row(800, *three), *odd, *clean_chat(10, seed=3, start=500)]


class PreviousHooks(TokenizerHooks):
    """The path before the render was shared: every use renders the row again, lengths are
    counted in the calling thread, one row at a time through the template."""

    def start_lengths(self, records: Sequence[Record]) -> Callable[[], list[int]]:
        texts, owner, appended = [], [], []
        for i, r in enumerate(records):
            for conv in self._conversations(r) if r.kind != "text" else []:
                try:
                    text = render(self.tokenizer, [m.to_dict() for m in conv], r.tools)
                except TunesmithError:
                    text = "\n".join(m.content for m in conv)
                unclosed = not text.rstrip().endswith(self._stop_texts)
                texts.append(text.rstrip() if unclosed else text)
                appended.append(unclosed)
                owner.append(i)
        ids = self.tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]
        out = [0] * len(records)
        for i, seq, extra in zip(owner, ids, appended):
            out[i] = max(out[i], len(seq) + extra)
        for i, r in enumerate(records):
            if abs(out[i] - self.config.sequence_len) <= 8:
                out[i] = self._exact_length(r, out[i])
        return lambda: out

    def _rendered(self, record: Record, side: int) -> str | None:
        return None  # render again


def _encoded(hooks: TokenizerHooks, record: Record) -> Any:
    try:
        enc = hooks.encode(record)
    except TemplateMismatch as exc:
        return str(exc)
    return (enc.input_ids, enc.labels, enc.spans, enc.turn_spans, enc.text, enc.appended_eos)


def test_batched_renders_equal_row_by_row_renders(tokenizer: Any) -> None:
    rows = _rows()
    convs = [[m.to_dict() for m in r.messages] for r in rows]
    expected = []
    for conv in convs:
        try:
            expected.append(render(tokenizer, conv))
        except TemplateMismatch:
            expected.append(None)
    assert render_many(tokenizer, convs, [()] * len(convs)) == expected
    assert any(t is not None for t in expected)


def test_shared_render_gives_the_same_encodings_lengths_and_findings(tokenizer: Any) -> None:
    rows = _rows()
    for system in (None, "You are a careful assistant."):
        config = config_from_dict({**CONFIG, "system_prompt": system})
        new, old = TokenizerHooks(tokenizer, config), PreviousHooks(tokenizer, config)
        assert new.lengths(rows) == old.start_lengths(rows)()  # renders kept by new.lengths
        assert [_encoded(new, r) for r in rows] == [_encoded(old, r) for r in rows]
        fresh = TokenizerHooks(tokenizer, config), PreviousHooks(tokenizer, config)
        reports = [audit_records(rows, config=config, tokens=h) for h in fresh]
        assert [f.__dict__ for f in reports[0].findings] == [f.__dict__ for f in reports[1].findings]
        drop = {"seconds"}
        assert {k: v for k, v in reports[0].stats.items() if k not in drop} == \
               {k: v for k, v in reports[1].stats.items() if k not in drop}


def test_tokenization_starts_from_the_audits_renders(tokenizer: Any) -> None:
    rows = _rows()
    config = config_from_dict({**CONFIG, "system_prompt": "Answer briefly."})
    memo = EncodeMemo()
    TokenizerHooks(tokenizer, config, memo).lengths(rows)
    kept = [memo.rendered(with_system_prompt(r.messages, config.system_prompt), r.tools) for r in rows]
    assert sum(t is not None for t in kept) >= len(rows) - 3  # all but the rows a template rejects
    with_memo = tokenize_chat_split(rows, tokenizer, config, memo)
    assert with_memo == tokenize_chat_split(rows, tokenizer, config) and with_memo.rows


def test_batched_encodings_equal_row_by_row_encodings(tokenizer: Any) -> None:
    """``encode_many`` (the missing_eos sample: chat rows tokenized a batch at a time from the kept
    renders) gives every row's encoding, or its error, exactly as ``encode`` one row at a time."""
    rows = _rows()
    for system in (None, "You are a careful assistant."):
        config = config_from_dict({**CONFIG, "system_prompt": system})
        batched, single = TokenizerHooks(tokenizer, config), PreviousHooks(tokenizer, config)
        batched.lengths(rows)  # keeps the renders encode_many starts from
        got = [str(e) if isinstance(e, TunesmithError) else (e.input_ids, e.labels, e.spans, e.turn_spans, e.text,
               e.appended_eos) for e in batched.encode_many(rows)]
        assert got == [_encoded(single, r) for r in rows]
        assert sum(not isinstance(g, str) for g in got) >= len(rows) - 3


def test_tokenization_does_not_render_again_the_rows_the_audit_encoded(tokenizer: Any) -> None:
    """The audit's missing_eos check encodes rows into the memo: tokenization prepares (renders and
    tokenizes) only the others, and its rows equal those made without any memo."""
    from tunesmith.tokenize.rows import _hints

    rows = _rows()
    config = config_from_dict({**CONFIG, "system_prompt": "Answer briefly."})
    memo = EncodeMemo()
    hooks = TokenizerHooks(tokenizer, config, memo)
    hooks.lengths(rows)
    for r in rows[:20]:  # clean rows every template renders
        hooks.encode(r)
    hints = _hints(rows, tokenizer, config, memo)
    assert hints[:20] == [None] * 20 and any(h is not None for h in hints[20:])
    with_memo = tokenize_chat_split(rows, tokenizer, config, memo)
    assert with_memo == tokenize_chat_split(rows, tokenizer, config) and with_memo.rows


def test_counts_in_a_worker_thread_equal_the_tokenizer(tmp_path: Path) -> None:
    from tunesmith.tokenize.tokenizer import template_text

    tok = build_tokenizer(tmp_path / "t", template_text("chatml"), ["<|im_start|>", "<|im_end|>"])
    texts = [r.messages[-1].content + "<|im_end|>" for r in clean_chat(40)] + ["", "<|im_start|>x"]
    expected = [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
    assert count_tokens(tok, texts) == expected
    counter = TokenCounter(tok)
    for k in range(0, len(texts), 7):
        counter.add(texts[k:k + 7])
    counter.add([])
    assert counter.counts() == expected
    tok.backend_tokenizer.enable_truncation(5)  # a backend set up differently: asked the ordinary way
    assert count_tokens(tok, texts) == expected


def test_as_trained_is_the_engines_rule_for_an_unclosed_last_turn() -> None:
    """``tokenize.counts.as_trained`` is the one place that says how a render is counted as trained
    (the audit asks it): a closed render as it is, an unclosed one without its trailing whitespace
    and with one EOS (``encode_chat`` appends it)."""
    from tunesmith.tokenize.counts import as_trained

    closed = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n"
    assert as_trained(closed, ("<|im_end|>",)) == (closed, 0)
    assert as_trained("### User: hi\n### Assistant: hello\n\n", ("</s>",)) == ("### User: hi\n### Assistant: hello", 1)
