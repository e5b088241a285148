"""A chat template of another model family than the tokenizer's is refused before training
(issue 15, item 1): every special-looking literal must be one special token, the turn closer a
special end-of-turn token."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SHARED
from tiny import build_tokenizer

from tunesmith.errors import ConfigError
from tunesmith.tokenize.template_fit import check_template, problems
from tunesmith.tokenize.tokenizer import load_tokenizer, require_chat_template, template_text

CHATML_SPECIALS = ["<|im_start|>", "<|im_end|>"]
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
GEMMA_SPECIALS = ["<start_of_turn>", "<end_of_turn>"]
TEMPLATES = SHARED / "fixtures" / "chat_templates" / "chat_templates"


def _tok(path: Path, own: str | None, specials: list[str]):  # noqa: ANN202
    return build_tokenizer(path, template_text(own) if own else None, specials)


def test_llama3_template_on_a_chatml_tokenizer_is_refused(tmp_path: Path) -> None:
    _tok(tmp_path / "tok", "chatml", CHATML_SPECIALS)
    tok = load_tokenizer(str(tmp_path / "tok"), "llama3")
    with pytest.raises(ConfigError) as err:
        require_chat_template(tok, "llama3")
    text = str(err.value)
    assert text.startswith("chat_template: llama3 does not fit the tokenizer")
    assert "'<|eot_id|>'" in text and "not a special end-of-turn token" in text  # the closer
    assert "llama3 template and the tokenizer is chatml" in text  # the family
    assert "use chat_template: tokenizer_default" in text  # the fix


def test_chatml_template_on_a_gemma_tokenizer_is_refused(tmp_path: Path) -> None:
    _tok(tmp_path / "tok", "gemma", GEMMA_SPECIALS)
    tok = load_tokenizer(str(tmp_path / "tok"), "chatml")
    found = problems(tok)
    assert any("'<|im_end|>'" in p and "special end-of-turn" in p for p in found), found
    assert any("chatml template and the tokenizer is gemma" in p for p in found), found


def test_closer_that_is_not_special_is_refused_even_without_a_family(tmp_path: Path) -> None:
    """A base tokenizer (no chat tokens at all) with a ChatML template: <|im_end|> would be trained
    as text pieces and generation would never stop."""
    _tok(tmp_path / "tok", None, [])
    tok = load_tokenizer(str(tmp_path / "tok"), "chatml")
    with pytest.raises(ConfigError, match=r"closes assistant turns with '<\|im_end\|>'.*\d+ token\(s\)"):
        require_chat_template(tok, "chatml")


@pytest.mark.parametrize(("own", "specials", "name"), [
    ("chatml", CHATML_SPECIALS, "chatml"), ("chatml", CHATML_SPECIALS, "qwen"),
    ("llama3", LLAMA3_SPECIALS, "llama3"), ("gemma", GEMMA_SPECIALS, "gemma"),
    (None, [], "zephyr"), (None, [], "llama2"), (None, [], "mistral"), (None, [], "alpaca"),
    ("chatml", CHATML_SPECIALS, "tokenizer_default"),
])
def test_templates_of_the_tokenizers_family_fit(tmp_path: Path, own: str | None, specials: list[str],
                                                name: str) -> None:
    _tok(tmp_path / "tok", own, specials)
    tok = load_tokenizer(str(tmp_path / "tok"), name)
    assert problems(tok) == []
    check_template(tok, name)


@pytest.mark.skipif(not TEMPLATES.is_dir(), reason="../shared chat templates are absent")
def test_every_real_template_fits_a_tokenizer_that_has_its_tokens(tmp_path: Path) -> None:
    """No false alarm: each of the shared real templates, as the tokenizer's own template with its
    special tokens, passes; the same template on a tokenizer of another family is refused when it
    writes special tokens of its own."""
    import re

    refused = []
    for path in sorted(TEMPLATES.glob("*.jinja")):
        text = path.read_text("utf-8")
        specials = sorted(set(re.findall(r"<\|[a-z_]+\|>|<[a-z]+_of_turn>", text)))
        if re.search(r"'<\|'\s*\+\s*message\['role'\]", text):
            specials += ["<|system|>", "<|user|>", "<|assistant|>"]
        tok = build_tokenizer(tmp_path / path.stem, text, specials)
        assert problems(tok) == [], path.stem
        other = build_tokenizer(tmp_path / f"{path.stem}-gemma", template_text("gemma"), GEMMA_SPECIALS)
        other.chat_template = text
        if [s for s in specials if s not in GEMMA_SPECIALS and "end_of_turn" not in s]:
            assert problems(other), path.stem
            refused.append(path.stem)
    assert len(refused) >= 7, refused


# --- item 2: a system prompt the template drops ---------------------------------------------

DROPS_SYSTEM = (
    "{%- for message in messages %}{%- if message.role != 'system' %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
CUTS_SYSTEM = DROPS_SYSTEM.replace(
    "{%- if message.role != 'system' %}", "{%- if message.role == 'system' %}{{- '<|im_start|>system\\n' + "
    "message.content[:20] + '<|im_end|>\\n' }}{%- else %}")


def _chat_records(system: str | None = None):  # noqa: ANN202
    from tunesmith.data.records import Message, Record, Source

    out = []
    for row, (q, a) in enumerate((("hi", "Paris."), ("hello", "Berlin.")), start=1):
        messages = ([Message("system", system)] if system and row == 2 else []) + [
            Message("user", q), Message("assistant", a)]
        out.append(Record("sft", Source("data.jsonl", row, row), "chat", tuple(messages)))
    return out


def _run(tmp_path: Path, template: str, records, system_prompt: str | None = None):  # noqa: ANN001, ANN202
    from tunesmith.config import config_from_dict
    from tunesmith.data.pipeline import DataResult
    from tunesmith.tokenize import run

    path = tmp_path / "t.jinja"
    path.write_text(template)
    cfg = config_from_dict({"base_model": str(tmp_path / "tok"), "chat_template": str(path), "datasets": ["d.jsonl"],
                            "output_dir": str(tmp_path / "out"), "system_prompt": system_prompt})
    return run(cfg, DataResult(train=records, eval=[], test=[], fingerprint="x", formats={}))


@pytest.mark.parametrize("template", [DROPS_SYSTEM, CUTS_SYSTEM], ids=["dropped", "cut"])
def test_a_system_prompt_the_template_leaves_out_is_an_error(tmp_path: Path, template: str) -> None:
    _tok(tmp_path / "tok", "chatml", CHATML_SPECIALS)
    system = "You answer with the capital city only, nothing else."
    with pytest.raises(ConfigError, match=r"leaves the system prompt 'You answer with the capital.*' \(data.jsonl:2\)"):
        _run(tmp_path, template, _chat_records(system))
    with pytest.raises(ConfigError, match=r"leaves the system prompt 'Be brief and polite always' \(system_prompt in"):
        _run(tmp_path, template, _chat_records(), system_prompt="Be brief and polite always")
    assert _run(tmp_path, template, _chat_records()).stats["rows"] == 2  # no system prompt anywhere: fine


@pytest.mark.parametrize("name", ["chatml", "gemma", "mistral", "alpaca"])
def test_templates_that_render_or_fold_the_system_prompt_pass(tmp_path: Path, name: str) -> None:
    from tunesmith.tokenize.template_fit import dropped_system_prompts

    _tok(tmp_path / "tok", name if name in ("chatml", "gemma") else None,
         {"chatml": CHATML_SPECIALS, "gemma": GEMMA_SPECIALS}.get(name, []))
    tok = load_tokenizer(str(tmp_path / "tok"), name)
    assert dropped_system_prompts(tok, {"You answer with the capital city only.": "cfg"}) == []


def _tool_records():  # noqa: ANN202
    from tunesmith.data.records import Message, Record, Source, ToolCall

    tools = ({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},)
    call = Message("assistant", "", tool_calls=(ToolCall("get_weather", {"city": "Oslo"}),))
    messages = (Message("user", "weather?"), call, Message("tool", "rain"), Message("assistant", "It rains."))
    return [Record("sft", Source("data.jsonl", 1, 1), "chat", (Message("user", "hi"), Message("assistant", "Hello."))),
            Record("sft", Source("data.jsonl", 2, 2), "chat", messages, tools)]


def test_tool_rows_under_a_template_that_drops_tools_are_refused(tmp_path: Path) -> None:
    """alpaca renders neither tool calls nor tool definitions: the call turn trained as an empty answer."""
    _tok(tmp_path / "tok", None, [])
    with pytest.raises(ConfigError, match=r"leaves tool calls \(data.jsonl:2 has one\) and tool definitions "
                                          r"\(data.jsonl:2 has them\) out of its render"):
        _run(tmp_path, template_text("alpaca"), _tool_records())
    assert _run(tmp_path, template_text("alpaca"), _tool_records()[:1]).stats["rows"] == 1  # no tool row: fine


def test_tool_rows_under_a_template_that_renders_them_pass(tmp_path: Path) -> None:
    _tok(tmp_path / "tok", "chatml", CHATML_SPECIALS)
    assert _run(tmp_path, template_text("chatml"), _tool_records()).stats["rows"] == 2


def test_audit_reports_a_template_that_does_not_fit_as_an_error(tmp_path: Path) -> None:
    """What train and preview refuse: the audit said nothing and measured lengths with the wrong template."""
    import json

    from tunesmith import audit
    from tunesmith.config import config_from_dict

    _tok(tmp_path / "tok", "chatml", CHATML_SPECIALS)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                     {"role": "assistant", "content": f"a{i}"}]}) + "\n" for i in range(4)))
    cfg = config_from_dict({"base_model": str(tmp_path / "tok"), "chat_template": "llama3", "datasets": [str(data)],
                            "output_dir": str(tmp_path / "out")})
    report = audit.run(cfg)
    found = report.by_check()["chat_template"]
    assert found.severity == "error" and "chat_template: llama3 does not fit the tokenizer" in found.message
    assert report.findings[0].check == "chat_template"  # worst first


# --- the generation prompt must be what precedes a trained assistant turn -------------------

CHATML_TURNS = (
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endfor %}"
)
# a template formatted for reading: the generation prompt's line break survives the render
EXTRA_NEWLINE = CHATML_TURNS + "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}\n{% endif %}"
# text the same, tokens not: the prompt's trailing space is its own token, the turn's merges into ' Fine'
TRAILING_SPACE = (
    "{%- for message in messages %}{%- if message.role == 'user' %}{{- 'User: ' + message.content + '\\n' }}"
    "{%- else %}{{- 'Assistant: ' + message.content + eos_token + '\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- 'Assistant: ' }}{%- endif %}"
)


def test_a_generation_prompt_that_differs_from_the_trained_turns_is_refused(tmp_path: Path) -> None:
    """The model would train on '<|im_start|>assistant\\n' + answer and be served '<|im_start|>assistant\\n\\n'."""
    from tunesmith.infer.generate import prompt_ids
    from tunesmith.tokenize.chat import encode_chat

    _tok(tmp_path / "tok", "chatml", CHATML_SPECIALS)
    records = _chat_records()
    with pytest.raises(ConfigError, match=r"chat_template: .*t\.jinja: its generation prompt ends "
                                          r"'.*assistant\\n\\n' where a rendered assistant turn reads "
                                          r"'.*assistant\\nthe answer.*never trained on"):
        _run(tmp_path, EXTRA_NEWLINE, records)
    tok = load_tokenizer(str(tmp_path / "tok"), str(tmp_path / "t.jinja"))  # the skew the check stops
    enc = encode_chat(records[0].messages, tok)
    assert prompt_ids(tok, records[0].messages[:1]) != enc.input_ids[: enc.spans[0][0]]
    fixed = EXTRA_NEWLINE.replace("}}\n{% endif %}", "}}{% endif %}")
    assert _run(tmp_path, fixed, records).stats["rows"] == 2


def test_a_generation_prompt_whose_tokens_differ_is_refused(tmp_path: Path) -> None:
    _tok(tmp_path / "tok", None, [])
    with pytest.raises(ConfigError, match=r"its generation prompt ends in the token\(s\) \[.*\] where a rendered "
                                          r"assistant turn has .*merges with the answer"):
        _run(tmp_path, TRAILING_SPACE, _chat_records())
    fixed = TRAILING_SPACE.replace("{{- 'Assistant: ' }}{%- endif %}", "{{- 'Assistant:' }}{%- endif %}").replace(
        "'Assistant: ' + message.content", "'Assistant:' + ' ' + message.content")
    assert _run(tmp_path, fixed, _chat_records()).stats["rows"] == 2


@pytest.mark.parametrize("style", ["byte_level", "sentencepiece"])
def test_every_builtin_template_prompts_as_it_trains(tmp_path: Path, style: str) -> None:
    from tunesmith.tokenize.template_fit import generation_prompt_skew
    from tunesmith.tokenize.tokenizer import builtin_templates

    for name in builtin_templates():
        text = template_text(name)
        specials = [s for s in CHATML_SPECIALS + LLAMA3_SPECIALS + GEMMA_SPECIALS if s in text]
        tok = build_tokenizer(tmp_path / f"{name}-{style}", text, specials, style=style)
        assert generation_prompt_skew(tok) is None, name
