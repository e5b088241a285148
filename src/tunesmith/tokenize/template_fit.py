"""Does the chat template fit the tokenizer? (template of one model family on another's tokenizer)

A template writes literals that look like special tokens (``<|im_end|>``, ``<end_of_turn>``,
``[INST]``, ``</s>``; patterns in ``families.yaml``). Each must encode as ONE special token of
the tokenizer: otherwise the model learns to type the literal text, piece by piece, and the
end-of-turn token it should stop on is never trained (a llama3 template on a ChatML tokenizer
trains ``<|eot_id|>`` as seven ordinary tokens). The literals are collected from the template
source and from renders of a probe conversation (templates that build ``'<|' + role + '|>'``).

Rules, in order:

1. the token that closes an assistant turn, when the template writes one that looks special,
   must be a special end-of-turn token (``closer_ids``), for every template, the tokenizer's own
   included;
2. a template other than the tokenizer's own, on a tokenizer that belongs to a family (one of
   the family's markers is a special token of it): every special-looking literal is one special
   token, except literals the tokenizer's own template writes too (the model was trained on them
   as text); ``<s>``/``</s>`` must be special whatever the tokenizer. A tokenizer of no family (a
   base model without chat tokens) may take a template whose role markers are plain text, like
   Zephyr's ``<|user|>``, as long as rule 1 holds;
3. a template other than the tokenizer's own whose family (by the markers it writes) is not the
   tokenizer's family is refused (a llama3 template on a ChatML tokenizer).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from tunesmith.config.yaml_load import load_table
from tunesmith.errors import ConfigError
from tunesmith.tokenize.spans import TemplateMismatch, render

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_COMMENT = re.compile(r"\{#.*?#\}", re.S)
_ANSWER = "Fine thanks and you"
_PROBES: tuple[tuple[dict[str, str], ...], ...] = tuple(
    tuple({"role": r, "content": c} for r, c in conv)
    for conv in (
        (("system", "Be brief"), ("user", "Hello there"), ("assistant", _ANSWER), ("user", "Good bye"),
         ("assistant", "Bye now")),
        (("user", "Hello there"), ("assistant", _ANSWER), ("user", "Good bye"), ("assistant", "Bye now")),
    )
)


@cache
def _table() -> dict[str, Any]:
    text = resources.files("tunesmith.tokenize").joinpath("families.yaml").read_text("utf-8")
    data: dict[str, Any] = load_table(text)
    data["pattern"] = re.compile("|".join(f"(?:{p})" for p in data["special_literals"]))
    return data


def own_template(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The chat template the tokenizer was saved with (before tunesmith attached the configured one)."""
    own = tokenizer.init_kwargs.get("chat_template")
    if isinstance(own, dict):
        own = own.get("default")
    if isinstance(own, list):
        own = next((t.get("template") for t in own if isinstance(t, dict) and t.get("name") == "default"), None)
    return own if isinstance(own, str) else None


def _renders(tokenizer: PreTrainedTokenizerBase, template: str) -> list[str]:
    """The probe conversation rendered by ``template`` (with a system turn if it accepts one)."""
    saved = tokenizer.chat_template
    tokenizer.chat_template = template
    try:
        for conv in _PROBES:
            try:
                return [render(tokenizer, conv), render(tokenizer, conv[:2] if conv[0]["role"] == "system" else conv[:1],
                                                        add_generation_prompt=True)]
            except TemplateMismatch:
                continue
        return []
    finally:
        tokenizer.chat_template = saved


def literals(tokenizer: PreTrainedTokenizerBase, template: str) -> set[str]:
    """Special-looking literals in the template source (comments left out) and in its renders."""
    pattern = _table()["pattern"]
    texts = [_COMMENT.sub("", template), *_renders(tokenizer, template)]
    return {m.group(0) for text in texts for m in pattern.finditer(text)}


def _special_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    ids = set(tokenizer.all_special_ids)
    ids.update(i for i, t in tokenizer.added_tokens_decoder.items() if t.special)
    return ids


def encodes_as_special(tokenizer: PreTrainedTokenizerBase, literal: str, specials: set[int] | None = None) -> bool:
    ids = tokenizer.encode(literal, add_special_tokens=False)
    return len(ids) == 1 and ids[0] in (specials if specials is not None else _special_ids(tokenizer))


def families_of(markers: Iterable[str]) -> list[str]:
    """Families any of whose markers are among ``markers``."""
    found = set(markers)
    return [name for name, fam in _table()["families"].items() if found & set(fam["markers"])]


def tokenizer_families(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Families any of whose markers are special tokens of the tokenizer."""
    specials = _special_ids(tokenizer)
    return [name for name, fam in _table()["families"].items()
            if any(encodes_as_special(tokenizer, m, specials) for m in fam["markers"])]


def closer_after_answer(tokenizer: PreTrainedTokenizerBase, template: str) -> str | None:
    """The special-looking literal that closes a (non-final) assistant turn, if the template writes one."""
    for text in _renders(tokenizer, template)[:1]:
        at = text.find(_ANSWER)
        if at < 0:
            return None
        after = text[at + len(_ANSWER):].lstrip()
        match = _table()["pattern"].match(after)
        return match.group(0) if match else None
    return None


def problems(tokenizer: PreTrainedTokenizerBase, template: str | None = None) -> list[str]:
    """What is wrong with ``template`` (default: the attached one) on this tokenizer; [] when it fits."""
    from tunesmith.tokenize.tokenizer import closer_ids

    template = template if template is not None else tokenizer.chat_template
    if not template:
        return []
    out: list[str] = []
    closer = closer_after_answer(tokenizer, template)
    if closer is not None and tokenizer.convert_tokens_to_ids(closer) not in closer_ids(tokenizer):
        pieces = len(tokenizer.encode(closer, add_special_tokens=False))
        out.append(f"the template closes assistant turns with {closer!r}, which is not a special end-of-turn token of "
                   f"this tokenizer ({pieces} token(s)): the model would never learn to stop")
    own = own_template(tokenizer)
    if own is not None and template.strip() == own.strip():
        return out
    mine = literals(tokenizer, template)
    theirs = literals(tokenizer, own) if own else set()
    owners = tokenizer_families(tokenizer)
    specials = _special_ids(tokenizer)
    table = _table()["families"]
    checked = mine if owners else mine & set(_table()["always_special"])
    bad = sorted(lit for lit in checked if lit not in theirs and lit != closer
                 and not encodes_as_special(tokenizer, lit, specials))
    if bad:
        shown = ", ".join(f"{b!r} ({len(tokenizer.encode(b, add_special_tokens=False))} tokens)" for b in bad[:4])
        out.append(f"the template writes {shown}, which this tokenizer does not have as one special token: "
                   "the model would learn the literal text")
    fams = families_of(mine)
    if fams and owners and not set(fams) & set(owners):
        out.append(f"it is a {'/'.join(fams)} template and the tokenizer is {'/'.join(owners)} (its special tokens: "
                   f"{', '.join(m for o in owners for m in table[o]['markers'])})")
    return out


def check_template(tokenizer: PreTrainedTokenizerBase, chat_template: str) -> None:
    """Raise ConfigError (``chat_template: ...``) when the attached template does not fit the tokenizer."""
    found = problems(tokenizer)
    if not found:
        return
    own = own_template(tokenizer)
    fix = ("use chat_template: tokenizer_default (the tokenizer's own template)" if own and chat_template != "tokenizer_default"
           else "use a template of the tokenizer's family, or add its tokens as special tokens to the tokenizer")
    raise ConfigError(f"chat_template: {chat_template} does not fit the tokenizer: {'; '.join(found)}; {fix}")


def system_prompts(records: Iterable[Any], configured: str | None) -> dict[str, str]:
    """Each distinct system prompt -> where it first appears (``file:line`` of a row, or the config)."""
    found: dict[str, str] = {}
    if configured:
        found[configured] = "system_prompt in the config"
    for record in records:
        for message in getattr(record, "messages", ()):
            if message.role == "system" and message.content.strip() and message.content not in found:
                found[message.content] = str(record.source)
    return found


def dropped_system_prompts(tokenizer: PreTrainedTokenizerBase, prompts: dict[str, str],
                           limit: int = 200) -> list[tuple[str, str]]:
    """The system prompts (with where they come from) whose text the chat template leaves out of its
    render of ``[system, user, assistant]``. A template that refuses a system turn is not listed:
    its rows fail with a row error of their own. At most ``limit`` prompts are rendered: the longest
    (a template that cuts prompts cuts those first), the configured one always."""
    out = []
    chosen = sorted(prompts, key=lambda t: (prompts[t] != "system_prompt in the config", -len(t)))[:limit]
    for text in chosen:
        where = prompts[text]
        conv = [{"role": "system", "content": text}, {"role": "user", "content": "Hello there"},
                {"role": "assistant", "content": _ANSWER}]
        try:
            rendered = render(tokenizer, conv)
        except TemplateMismatch:
            continue
        if text.strip() not in rendered:
            out.append((text, where))
    return out


def check_system_prompts(tokenizer: PreTrainedTokenizerBase, chat_template: str, records: Iterable[Any],
                         configured: str | None) -> None:
    """Raise ConfigError when the chat template drops (or rewrites) a system prompt of the data or config:
    the model would be trained without the instructions the rows were written for."""
    missing = dropped_system_prompts(tokenizer, system_prompts(records, configured))
    if not missing:
        return
    text, where = missing[0]
    shown = text if len(text) <= 60 else text[:57] + "..."
    more = f" (and {len(missing) - 1} other system prompt(s))" if len(missing) > 1 else ""
    raise ConfigError(f"chat_template: {chat_template} leaves the system prompt {shown!r} ({where}){more} out of its "
                      "render: the model would never see it; use a template that renders system turns, or fold the "
                      "instructions into the user turn in the data")


_PROBE_CALL, _PROBE_TOOL = "tunesmith_probe_call", "tunesmith_probe_tool"


def _tool_rows(records: Iterable[Any]) -> tuple[str | None, str | None]:
    """Where the first row with a tool call, and the first with tool definitions, are (None when none is)."""
    call = defined = None
    for record in records:
        turns = (*getattr(record, "messages", ()), *getattr(record, "chosen", ()), *getattr(record, "rejected", ()))
        if call is None and any(m.tool_calls for m in turns):
            call = str(record.source)
        if defined is None and getattr(record, "tools", ()):
            defined = str(record.source)
        if call is not None and defined is not None:
            break
    return call, defined


def check_tool_rendering(tokenizer: PreTrainedTokenizerBase, chat_template: str, records: Iterable[Any]) -> None:
    """Raise ConfigError when rows hold tool calls or tool definitions and the chat template leaves them out of
    its render: a call turn would train as an empty answer, the model would never see the tools."""
    call_at, tools_at = _tool_rows(records)
    if call_at is None and tools_at is None:
        return
    conv = [{"role": "user", "content": "Hello there"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": _PROBE_CALL, "arguments": {"x": 1}}}]},
            {"role": "tool", "content": "42"}, {"role": "assistant", "content": _ANSWER}]
    tools = [{"type": "function", "function": {"name": _PROBE_TOOL, "parameters": {"type": "object"}}}]
    try:
        rendered = render(tokenizer, conv, tools)
    except TemplateMismatch:
        return  # a template that cannot render tool turns refuses each such row with a row error of its own
    lost = []
    if call_at is not None and _PROBE_CALL not in rendered:
        lost.append(f"tool calls ({call_at} has one)")
    if tools_at is not None and _PROBE_TOOL not in rendered:
        lost.append(f"tool definitions ({tools_at} has them)")
    if lost:
        raise ConfigError(f"chat_template: {chat_template} leaves {' and '.join(lost)} out of its render: a call turn "
                          "would train as an empty answer and the model would never see the tools; use a template "
                          "that renders tools (chatml, qwen, the model's own), or remove the tool rows")


_PROBE_REASONING = "tunesmith probe reasoning"


def _reasoning_row(records: Iterable[Any]) -> str | None:
    """Where the first row whose assistant turns carry reasoning is (None when none does)."""
    for record in records:
        turns = (*getattr(record, "messages", ()), *getattr(record, "chosen", ()), *getattr(record, "rejected", ()))
        if any(m.role == "assistant" and m.reasoning for m in turns):
            return str(record.source)
    return None


def check_reasoning_rendering(tokenizer: PreTrainedTokenizerBase, chat_template: str, records: Iterable[Any]) -> None:
    """Raise ConfigError when rows hold reasoning (``reasoning_content``/``thinking``) and the chat template leaves
    it out of its render of a final assistant turn: the model would be trained on the answers without the reasoning
    the rows were written with, and nothing would say so."""
    where = _reasoning_row(records)
    if where is None:
        return
    conv = [{"role": "user", "content": "Hello there"},
            {"role": "assistant", "content": _ANSWER, "reasoning_content": _PROBE_REASONING}]
    try:
        rendered = render(tokenizer, conv)
    except TemplateMismatch:
        return  # rows the template cannot render are refused one by one with a row error
    if _PROBE_REASONING not in rendered:
        raise ConfigError(f"chat_template: {chat_template} leaves reasoning out of its render ({where} has some): the "
                          "model would learn the answers without it; use a template that renders reasoning_content "
                          "(chatml, the model's own), or remove the reasoning from the rows")


def _prompt_and_turn(tokenizer: PreTrainedTokenizerBase) -> tuple[str, str] | None:
    """A probe conversation's render up to its last assistant turn with the generation prompt, and its whole
    render (the first probe the template accepts; None when it accepts none)."""
    for probe in _PROBES:
        # an answer opening with a word every vocabulary joins to its leading space (" the"), so a prompt that
        # ends in that space tokenizes differently from the turn
        probe = (*probe[:-1], {"role": "assistant", "content": "the answer is yes"})
        try:
            return render(tokenizer, probe[:-1], add_generation_prompt=True), render(tokenizer, probe)
        except TemplateMismatch:
            continue
    return None


def _tokens(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def generation_prompt_skew(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """How the template's generation prompt differs from what precedes a rendered assistant turn's content,
    as text or as tokens (None when it does not). Servers (tunesmith's, vLLM, llama.cpp) prompt with the
    generation prompt; training reads the rendered turn: they must agree, token for token."""
    pair = _prompt_and_turn(tokenizer)
    if pair is None:
        return None
    prompt, turn = pair
    if not turn.startswith(prompt):
        n = len(os.path.commonprefix([prompt, turn]))
        return (f"its generation prompt ends {prompt[max(0, n - 20):][-40:]!r} where a rendered assistant turn reads "
                f"{turn[max(0, n - 20):n + 20]!r}")
    ids, whole = _tokens(tokenizer, prompt), _tokens(tokenizer, turn)
    if whole[: len(ids)] != ids:
        n = len(os.path.commonprefix([ids, whole]))
        pieces = lambda part: [tokenizer.decode([i]) for i in part]  # noqa: E731
        return (f"its generation prompt ends in the token(s) {pieces(ids[n:])} where a rendered assistant turn has "
                f"{pieces(whole[n:n + 2])} (the text after the prompt merges with the answer into other tokens)")
    return None


def check_generation_prompt(tokenizer: PreTrainedTokenizerBase, chat_template: str) -> None:
    """Raise ConfigError when the generation prompt disagrees with the rendered assistant turns: the model would
    be trained on one prefix and served with another (a template formatted for reading, with line breaks and
    indentation outside ``{%- -%}``, renders that whitespace too)."""
    skew = generation_prompt_skew(tokenizer)
    if skew is not None:
        raise ConfigError(f"chat_template: {chat_template}: {skew}: a served model would be prompted with text it "
                          "never trained on; make the template's add_generation_prompt branch write exactly what "
                          "precedes an assistant turn's content (trim layout whitespace with {%- -%}), or use a "
                          "built-in template (chatml, llama3, qwen, ...)")


def check_for_data(tokenizer: PreTrainedTokenizerBase, chat_template: str, system_prompt: str | None,
                   train: Iterable[Any], evals: Iterable[Any]) -> None:
    """Every check of the chat template against the tokenizer and the conversations about to be tokenized
    (tokenization refuses on the first; the audit reports it): a template that fits the tokenizer, whose generation
    prompt matches its rendered turns, and that renders every system prompt and any tool calls, tool definitions
    and reasoning."""
    import itertools

    from tunesmith.tokenize.tokenizer import require_chat_template

    require_chat_template(tokenizer, chat_template)
    check_generation_prompt(tokenizer, chat_template)
    check_system_prompts(tokenizer, chat_template, itertools.chain(train, evals), system_prompt)
    check_tool_rendering(tokenizer, chat_template, itertools.chain(train, evals))
    check_reasoning_rendering(tokenizer, chat_template, itertools.chain(train, evals))
