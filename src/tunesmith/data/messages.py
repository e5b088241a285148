"""The one message parser every conversational format uses.

Accepts OpenAI-style ``{"role", "content"}`` dicts and sharegpt ``{"from", "value"}`` dicts
(tag names from the DatasetSpec), string content or typed content parts
(``text``/``value``; ``reasoning`` -> ``Message.reasoning``; ``tool_call`` -> tool calls),
role aliases (human, gpt, function_call, observation, developer, ...) and per-message
``loss_weight`` / ``weight``.
"""

from __future__ import annotations

import contextlib
import functools
import json
from typing import Any

from tunesmith.errors import did_you_mean
from tunesmith.data import rowcheck
from tunesmith.data.records import ROLES, Message, ToolCall
from tunesmith.data.rows import FUNCTION_CALL, FieldError, ParseContext, got, structured, weight

_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")
_PART_TEXT_KEYS = ("text", "value", "content")
_PART_TYPES = "text, reasoning, tool_call"


def parse_messages(value: Any, field: str, ctx: ParseContext) -> tuple[Message, ...]:
    """A list of messages (or its JSON string) under ``field``."""
    if not isinstance(value, list):
        value = structured(value, field)
        if not isinstance(value, list):
            raise FieldError(field, f"must be a list of messages {got(value)}")
    if not value:
        raise FieldError(field, "is empty (no messages)")
    return _results_in_call_order(value, [_message(item, field, i, ctx) for i, item in enumerate(value)], field)


def _results_in_call_order(items: list[Any], messages: list[Message], field: str) -> tuple[Message, ...]:
    """Tool results name their call by ``tool_call_id``; records keep no ids (templates pair results with
    calls by position), so the results after a turn whose calls all have ids are put in the order of those
    calls, and a ``tool_call_id`` naming none of them is an error."""
    i = 0
    while i < len(messages):
        end = i + 1
        while end < len(messages) and messages[end].role == "tool":
            end += 1
        ids = _call_ids(items[i]) if messages[i].tool_calls and end > i + 1 else None
        if ids:
            keys = [_result_key(items[k], ids, f"{field}[{k}]", f"{field}[{i}]") for k in range(i + 1, end)]
            if None not in keys:
                order = sorted(range(i + 1, end), key=lambda k: keys[k - i - 1])
                messages[i + 1:end] = [messages[k] for k in order]
        i = end
    return tuple(messages)


def _call_ids(item: Any) -> list[str] | None:
    """The ``id`` of each OpenAI tool call of a message, or None unless every call has one."""
    calls = item.get("tool_calls") if isinstance(item, dict) else None
    if not isinstance(calls, list) or not calls:
        return None
    ids = [c.get("id") if isinstance(c, dict) else None for c in calls]
    return ids if all(isinstance(x, str) and x for x in ids) else None  # type: ignore[return-value]


def _result_key(item: Any, ids: list[str], where: str, caller: str) -> int | None:
    """The position among ``ids`` of the call a tool result answers (None: the result names no call)."""
    called = item.get("tool_call_id") if isinstance(item, dict) else None
    if not isinstance(called, str) or not called:
        return None
    if called not in ids:
        raise FieldError(f"{where}.tool_call_id", f"'{called}' is not the id of a call of {caller} "
                         f"(its calls: {', '.join(ids)}){did_you_mean(called, ids)}")
    return ids.index(called)


@functools.cache
def request_context() -> ParseContext:
    """The parse settings of messages that are not in a dataset file (a served request, a logged one)."""
    from tunesmith.config.schema import DatasetSpec

    return ParseContext.create(DatasetSpec(path="request"))


def canonical(value: Any, field: str = "messages") -> list[dict[str, Any]]:
    """OpenAI-style messages (a request, a serving log's) as a training row holds them: roles resolved
    (``developer`` is ``system``), text parts joined, tool calls as ``{"type": "function", ...}`` with
    parsed arguments; ``FieldError`` when they are not messages."""
    return [m.to_dict() for m in parse_messages(value, field, request_context())]


def parse_message(item: Any, where: str, ctx: ParseContext) -> Message:
    """One message; ``where`` is its field path for errors (``chosen``)."""
    return _message(item, where, None, ctx)


def _message(item: Any, field: str, index: int | None, ctx: ParseContext) -> Message:
    """One message at ``field[index]`` (or ``field`` when index is None); paths are built only on error."""
    if not isinstance(item, dict):
        item = structured(item, _at(field, index))
        if not isinstance(item, dict):
            raise FieldError(_at(field, index), f"must be an object with role and content {got(item)}")
    role_key = "role" if "role" in item else ctx.spec.role_tag
    content_key = _content_key(item, role_key, ctx)
    raw_role = item.get(role_key)
    role = ctx.roles.get(raw_role) if isinstance(raw_role, str) else None
    if role is None:
        role = _role(raw_role, f"{_at(field, index)}.{role_key}", ctx)
    content = item.get(content_key)
    reasoning: str | None = None
    calls: tuple[ToolCall, ...] = ()
    if not isinstance(content, str):
        content, reasoning, calls = _content(content, f"{_at(field, index)}.{content_key}")
    if role == FUNCTION_CALL:
        role = "assistant"
        if not calls:
            calls, content = _function_calls(content, f"{_at(field, index)}.{content_key}"), ""
    if "tool_calls" in item:
        calls += _tool_calls(item["tool_calls"], f"{_at(field, index)}.tool_calls")
    if item.get("function_call") is not None:  # OpenAI's legacy single call (before tool_calls)
        calls += (tool_call(item["function_call"], f"{_at(field, index)}.function_call"),)
    if reasoning is None and ("reasoning_content" in item or "reasoning" in item or "thinking" in item):
        reasoning = _reasoning(item, _at(field, index))
    if not calls and not content.strip():
        problem = "is empty" if content_key in item else "is missing"
        raise FieldError(f"{_at(field, index)}.{content_key}", problem)
    loss = next((k for k in ("loss_weight", "weight") if item.get(k) is not None), None)
    name = item.get("name")
    return Message(
        role=role,
        content=content,
        weight=weight(item[loss], f"{_at(field, index)}.{loss}") if loss else None,
        tool_calls=calls,
        reasoning=reasoning,
        name=name if isinstance(name, str) else None,
    )


def _content_key(item: dict[str, Any], role_key: str, ctx: ParseContext) -> str:
    """The key holding the content: ``content`` (OpenAI style) or the sharegpt tag; when it is
    missing, the one that goes with the row's role key (``role`` -> ``content``)."""
    if "content" in item:
        return "content"
    if ctx.spec.content_tag in item:
        return ctx.spec.content_tag
    return "content" if role_key == "role" else ctx.spec.content_tag


def _at(field: str, index: int | None) -> str:
    return field if index is None else f"{field}[{index}]"


def parse_tools(value: Any, field: str) -> tuple[dict[str, Any], ...]:
    """Tool definitions (list or JSON string) in OpenAI shape ``{"type": "function", "function": {...}}``."""
    if value is None or value == "":
        return ()
    value = structured(value, field)
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise FieldError(field, f"must be a list of tool definitions {got(value)}")
    tools = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or not (isinstance(tool.get("name"), str) or "function" in tool):
            raise FieldError(f"{field}[{i}]", f"must be a tool definition with a name {got(tool)}")
        tools.append(tool if "function" in tool else {"type": "function", "function": tool})
    return tuple(tools)


def tool_call(value: Any, where: str) -> ToolCall:
    """``{"name", "arguments"}`` or OpenAI's ``{"type": "function", "function": {...}}``."""
    value = structured(value, where)
    if isinstance(value, dict) and isinstance(value.get("function"), dict):
        value = value["function"]
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
        raise FieldError(where, f'must be a tool call {{"name": ..., "arguments": {{...}}}} {got(value)}')
    args = value.get("arguments", value.get("parameters"))
    if isinstance(args, str):
        with contextlib.suppress(FieldError):  # arguments that are not JSON stay a string, as written
            args = structured(args, where)
    if args is None:
        args = {}
    if not isinstance(args, (dict, str)):
        raise FieldError(f"{where}.arguments", f"must be an object or a JSON string {got(args)}")
    return ToolCall(name=value["name"], arguments=args)


def _role(raw: Any, where: str, ctx: ParseContext) -> str:
    if raw is None:
        raise FieldError(where, "is missing")
    if not isinstance(raw, str):
        raise FieldError(where, f"must be a string {got(raw)}")
    role = ctx.roles.get(raw) or ctx.roles.get(raw.strip().lower())
    if role is None:
        hint = did_you_mean(raw, list(ctx.roles))
        raise FieldError(where, f"'{raw}' is not one of {', '.join(ROLES)}{hint}")
    return role


def _content(value: Any, where: str) -> tuple[str, str | None, tuple[ToolCall, ...]]:
    """Text, reasoning and tool calls of a message's content (string or typed parts)."""
    if value is None:
        return "", None, ()
    if isinstance(value, str):
        return value, None, ()
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise FieldError(where, f"must be a string or a list of content parts {got(value)}")
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    for i, part in enumerate(value):
        part_where = f"{where}[{i}]"
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            raise FieldError(part_where, f"must be a content part {{'type': 'text', 'text': ...}} {got(part)}")
        kind = part.get("type", "text")
        body = next((part[k] for k in (*_PART_TEXT_KEYS, kind) if k in part), None)
        if kind == "tool_call":
            calls.append(tool_call(body, part_where))
        elif kind in ("text", "reasoning", "thinking"):
            if not isinstance(body, str):
                raise FieldError(part_where, f"needs a string 'text' or 'value' {got(body)}")
            (texts if kind == "text" else thoughts).append(body)
        else:
            raise FieldError(f"{part_where}.type", f"'{kind}' is not supported (use one of {_PART_TYPES})")
    return "".join(texts), "".join(thoughts) if thoughts else None, tuple(calls)


def _function_calls(content: str, where: str) -> tuple[ToolCall, ...]:
    """A sharegpt ``function_call`` turn: one call or a list of calls as JSON."""
    try:
        value = structured(content, where)
    except FieldError:
        value = content
    if isinstance(value, list):
        return tuple(tool_call(v, f"{where}[{i}]") for i, v in enumerate(value))
    return (tool_call(value, where),)


def _tool_calls(value: Any, where: str) -> tuple[ToolCall, ...]:
    if value is None or value == "":
        return ()
    value = structured(value, where)
    if not isinstance(value, list):
        raise FieldError(where, f"must be a list of tool calls {got(value)}")
    return tuple(tool_call(v, f"{where}[{i}]") for i, v in enumerate(value))


def _reasoning(item: dict[str, Any], where: str) -> str | None:
    key = next((k for k in _REASONING_KEYS if item.get(k) is not None), None)
    if key is None:
        return None
    if not isinstance(item[key], str):
        raise FieldError(f"{where}.{key}", f"must be a string {got(item[key])}")
    return item[key] or None


def json_turns(value: str, ctx: ParseContext) -> Any | None:
    """The message(s) a string holds as JSON (an object or a non-empty list of objects, each with a role key --
    ``role`` or the dataset's sharegpt tag -- and a content key or tool calls), else None: an answer that is
    itself JSON (``{"name": "Bob", "role": "engineer"}``, ``{"from": "NYC", "to": "LA"}``) stays text."""
    stripped = value.strip()
    if not stripped or stripped[0] not in "[{":
        return None
    try:
        parsed = rowcheck.loads(stripped)
    except (json.JSONDecodeError, rowcheck.RowProblem):  # not usable as messages: the text stays text
        return None
    items = [parsed] if isinstance(parsed, dict) else parsed if isinstance(parsed, list) else []
    keys = ("role", ctx.spec.role_tag)
    bodies = ("content", ctx.spec.content_tag, "tool_calls", "function_call")
    if items and all(isinstance(p, dict) and any(k in p for k in keys) and any(k in p for k in bodies)
                     for p in items):
        return parsed
    return None


def parse_turns(value: Any, field: str, role: str, ctx: ParseContext) -> tuple[Message, ...]:
    """One side of a pair: plain text (one ``role`` turn), one message, or a list of messages."""
    if isinstance(value, str):
        parsed = json_turns(value, ctx)
        if parsed is None:
            if not value.strip():
                raise FieldError(field, "is empty")
            return (Message(role=role, content=value),)
        value = parsed
    if isinstance(value, dict):
        return (parse_message(value, field, ctx),)
    return parse_messages(value, field, ctx)
