"""Conformance: for every real chat template in ../shared, the trained spans are exactly each
assistant content (after the template's own trimming) followed by its end-of-turn token.

A tokenizer that has the template's special tokens is built per template, in two styles
(byte-level BPE and sentencepiece-style, whose word-start markers change how the boundary
between header and content tokenizes). The expected
closer per template is written out below (read off each template); a template added to
../shared later is still checked, with "any special token closes the turn".
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import SHARED
from tiny import SPECIAL_EOS, build_tokenizer

from tunesmith.data.records import Message
from tunesmith.tokenize import encode_chat
from tunesmith.tokenize.preview import runs

TEMPLATES = SHARED / "fixtures" / "chat_templates" / "chat_templates"
GENERATION = SHARED / "fixtures" / "chat_templates" / "generation_configs"

# None: the template writes no end-of-turn token; tunesmith appends EOS after the last turn.
EXPECTED_CLOSER: dict[str, str | None] = {
    "alpaca": SPECIAL_EOS, "amberchat": None, "chatml": "<|im_end|>", "chatqa": None,
    "falcon-instruct": None, "gemma-it": "<end_of_turn>", "granite-3.0-instruct": "<|end_of_text|>",
    "llama-2-chat": SPECIAL_EOS, "llama-3-instruct": "<|eot_id|>", "mistral-instruct": SPECIAL_EOS,
    "openchat-3.5": "<|end_of_turn|>", "phi-3-small": "<|end|>", "phi-3": "<|end|>",
    "qwen2.5-instruct": "<|im_end|>", "saiga": SPECIAL_EOS, "solar-instruct": None, "vicuna": SPECIAL_EOS,
    "zephyr": SPECIAL_EOS,
}

SYSTEM = Message("system", "You are a helpful assistant.")
THREE_TURNS = (
    Message("user", "What is the capital of France?"),
    Message("assistant", "  The capital of France is Paris.\n"),
    Message("user", "And of Germany?"),
    Message("assistant", "Berlin is the capital of Germany.\nIt is a big city."),
    Message("user", "Thank you!"),
    Message("assistant", "You are welcome, please ask again"),
)
ONE_TURN = THREE_TURNS[:2]


def _template_files() -> list[Path]:
    return sorted(TEMPLATES.glob("*.jinja")) if TEMPLATES.is_dir() else []


def _special_tokens(template: str) -> list[str]:
    found = set(re.findall(r"<\|[a-z_]+\|>|<[a-z]+_of_turn>", template))
    if re.search(r"'<\|'\s*\+\s*message\['role'\]", template):  # roles built into tokens, e.g. <|user|>
        found |= {"<|system|>", "<|user|>", "<|assistant|>"}
    return sorted(found)


@pytest.fixture(
    scope="module",
    params=[(p, style) for p in _template_files() for style in ("byte_level", "sentencepiece")],
    ids=lambda param: f"{param[0].stem}-{param[1]}",
)
def template(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, object]:
    path, style = request.param
    text = path.read_text("utf-8")
    tokenizer = build_tokenizer(tmp_path_factory.mktemp(path.stem), text, _special_tokens(text), style=style)
    return path.stem, tokenizer


def _accepted(tokenizer: object, turns: tuple[Message, ...]) -> tuple[Message, ...] | None:
    """The conversation with a system prompt, else without one: whichever the template renders."""
    for conversation in ((SYSTEM, *turns), turns):
        dicts = [m.to_dict() for m in conversation]
        try:
            tokenizer.apply_chat_template(dicts, tokenize=False)  # type: ignore[attr-defined]
        except Exception:  # the template's own raise_exception
            continue
        return conversation
    return None


@pytest.mark.skipif(not _template_files(), reason="../shared chat templates are absent")
@pytest.mark.parametrize("turns", [THREE_TURNS, ONE_TURN], ids=["system+3 turns", "single turn"])
def test_trained_spans_are_content_plus_end_of_turn(
    template: tuple[str, object], turns: tuple[Message, ...]
) -> None:
    name, tokenizer = template
    conversation = _accepted(tokenizer, turns)
    if conversation is None:
        pytest.skip(f"{name} renders neither variant of this conversation")
    enc = encode_chat(conversation, tokenizer)  # type: ignore[arg-type]
    decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=False)  # type: ignore[attr-defined]  # noqa: E731
    spans = [decode(enc.input_ids[a:b]) for a, b, trained in runs(enc.labels) if trained]
    answers = [m.content for m in conversation if m.role == "assistant"]
    assert len(spans) == len(answers), spans
    closer = EXPECTED_CLOSER.get(name, "")
    for k, (span, answer) in enumerate(zip(spans, answers)):
        last = k == len(answers) - 1
        if name not in EXPECTED_CLOSER:
            end = r"(<[^<>]+>)"  # an unknown template: some special token
        elif closer is None:
            end = re.escape(SPECIAL_EOS) if last else ""
        else:
            end = re.escape(closer)
        pattern = r"\s*" + re.escape(answer.strip()) + r"\s*" + end
        assert re.fullmatch(pattern, span), f"{name} turn {k}: {span!r} is not content + {closer!r}"
    last_token = enc.input_ids[enc.spans[-1][1] - 1]
    assert enc.labels[enc.spans[-1][1] - 1] == last_token
    if name in EXPECTED_CLOSER:
        assert decode([last_token]) == (closer or SPECIAL_EOS)
        assert enc.appended_eos == (closer is None)


@pytest.mark.skipif(not GENERATION.is_dir(), reason="../shared generation configs are absent")
def test_closer_table_agrees_with_the_families_stop_tokens() -> None:
    """A family whose turns end with a dedicated token stops on it besides EOS (>= 2 stop ids);
    a family whose turns end with EOS stops on EOS alone. Guards EXPECTED_CLOSER above."""
    import json

    for path in sorted(GENERATION.glob("*.json")):
        config = json.loads(path.read_text("utf-8"))
        stem = Path(config["chat_template"]).stem
        assert (TEMPLATES / f"{stem}.jinja").is_file(), path.name
        assert stem in EXPECTED_CLOSER, f"{path.name}: add {stem} to EXPECTED_CLOSER"
        closer, stops = EXPECTED_CLOSER[stem], config["stop_token_ids"]
        if closer == SPECIAL_EOS:
            assert len(stops) == 1, path.name
        elif closer is not None:
            assert len(stops) >= 2, path.name
