"""Render the subset of Go's text/template that Ollama chat templates use, so that an exported
Modelfile's TEMPLATE can be checked against the training chat template without Ollama.

Supported: text and ``{{ }}`` actions with ``{{-``/``-}}`` trimming and ``{{/* */}}`` comments;
``if`` / ``else if`` / ``else`` / ``end``; ``range`` (with ``$i, $m :=`` and ``else``); variables
(``$x := ...``, ``$x = ...``, ``$``, ``$x.Field``); fields (``.Role``, ``$.System``); string, number
and bool literals; parentheses; the functions ``eq ne lt le gt ge and or not len slice index``.
Anything else is an error naming the action, never a silent mis-render.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tunesmith.errors import TunesmithError

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|`[^`]*`|:=|[(),=|]|[^\s(),=|]+')
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r"}


class GoTemplateError(TunesmithError):
    """The template uses something this renderer does not support, or is malformed."""


@dataclass
class _Node:
    kind: str  # text | out | if | range | set
    text: str = ""
    expr: list[str] = field(default_factory=list)
    body: list[_Node] = field(default_factory=list)
    orelse: list[_Node] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    declare: bool = False


def render(template: str, data: dict[str, Any]) -> str:
    """``template`` executed on ``data`` (Go field names: ``System``, ``Messages`` of ``Role``/``Content``)."""
    nodes, rest = _parse(_lex(template), 0, ())
    if rest is not None:
        raise GoTemplateError(f"Go template: unexpected {{{{ {rest[1]} }}}}")
    out: list[str] = []
    _run(nodes, data, [{"$": data}], out)
    return "".join(out)


def _lex(template: str) -> list[tuple[str, str]]:
    """[("text", s) | ("action", body)] with the trim markers applied to the neighbouring text."""
    parts: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for m in _ACTION.finditer(template):
        text = template[pos : m.start()]
        text = text.lstrip() if trim_next else text
        parts.append(("text", text.rstrip() if m.group(1) else text))
        body = m.group(2).strip()
        if not (body.startswith("/*") and body.endswith("*/")):
            parts.append(("action", body))
        pos, trim_next = m.end(), bool(m.group(3))
    tail = template[pos:]
    parts.append(("text", tail.lstrip() if trim_next else tail))
    return parts


def _parse(parts: list[tuple[str, str]], i: int, stops: tuple[str, ...]) -> tuple[list[_Node], Any]:
    """Nodes up to an action whose first word is in ``stops``; returns (nodes, (index, action) or None)."""
    nodes: list[_Node] = []
    while i < len(parts):
        kind, body = parts[i]
        if kind == "text":
            if body:
                nodes.append(_Node("text", text=body))
            i += 1
            continue
        words = _TOKEN.findall(body)
        head = words[0] if words else ""
        if head in stops:
            return nodes, (i, body)
        if head in ("if", "range"):
            node, i = _block(parts, i, head, words[1:])
            nodes.append(node)
            continue
        if head in ("end", "else", "with", "define", "template", "block"):
            raise GoTemplateError(f"Go template: unexpected or unsupported {{{{ {body} }}}}")
        nodes.append(_assignment(words) or _Node("out", expr=words))
        i += 1
    return nodes, None


def _block(parts: list[tuple[str, str]], i: int, head: str, words: list[str]) -> tuple[_Node, int]:
    node = _Node(head)
    if head == "range" and ":=" in words:
        cut = words.index(":=")
        node.names, words = [w for w in words[:cut] if w != ","], words[cut + 1 :]
    node.expr = words
    node.body, stop = _parse(parts, i + 1, ("else", "end"))
    while stop is not None and _TOKEN.findall(stop[1])[0] == "else":
        rest = _TOKEN.findall(stop[1])[1:]
        if rest and rest[0] == "if" and head == "if":  # else if: a nested if in the else branch
            inner, j = _block(parts, stop[0], "if", rest[1:])
            node.orelse = [inner]
            return node, j
        node.orelse, stop = _parse(parts, stop[0] + 1, ("end",))
    if stop is None:
        raise GoTemplateError(f"Go template: {{{{ {head} }}}} without {{{{ end }}}}")
    return node, stop[0] + 1


def _assignment(words: list[str]) -> _Node | None:
    if len(words) >= 3 and words[0].startswith("$") and words[1] in (":=", "="):
        return _Node("set", names=[words[0]], expr=words[2:], declare=words[1] == ":=")
    return None


def _run(nodes: list[_Node], dot: Any, scopes: list[dict[str, Any]], out: list[str]) -> None:
    for node in nodes:
        if node.kind == "text":
            out.append(node.text)
        elif node.kind == "out":
            out.append(_show(_eval(node.expr, dot, scopes)))
        elif node.kind == "set":
            _set(scopes, node.names[0], _eval(node.expr, dot, scopes), node.declare)
        elif node.kind == "if":
            chosen = node.body if _truth(_eval(node.expr, dot, scopes)) else node.orelse
            _run(chosen, dot, [*scopes, {}], out)
        else:
            _range(node, dot, scopes, out)


def _range(node: _Node, dot: Any, scopes: list[dict[str, Any]], out: list[str]) -> None:
    items = _eval(node.expr, dot, scopes) or []
    pairs = list(items.items()) if isinstance(items, dict) else list(enumerate(items))
    if not pairs:
        _run(node.orelse, dot, [*scopes, {}], out)
    for key, value in pairs:
        names = dict(zip(node.names, [key, value] if len(node.names) == 2 else [value]))
        _run(node.body, value, [*scopes, names], out)


def _set(scopes: list[dict[str, Any]], name: str, value: Any, declare: bool) -> None:
    if declare:
        scopes[-1][name] = value
        return
    for scope in reversed(scopes):
        if name in scope:
            scope[name] = value
            return
    raise GoTemplateError(f"Go template: assignment to undefined variable {name}")


def _eval(words: list[str], dot: Any, scopes: list[dict[str, Any]]) -> Any:
    if "|" in words:
        raise GoTemplateError(f"Go template: pipelines are not supported ({' '.join(words)})")
    args, i = [], 0
    while i < len(words):
        if words[i] == "(":
            depth, j = 1, i + 1
            while depth:
                depth += {"(": 1, ")": -1}.get(words[j], 0)
                j += 1
            args.append(("value", _eval(words[i + 1 : j - 1], dot, scopes)))
            i = j
        else:
            args.append(("word", words[i]))
            i += 1
    if args and args[0][0] == "word" and args[0][1] in _FUNCS:
        return _FUNCS[args[0][1]](*[_operand(a, dot, scopes) for a in args[1:]])
    if len(args) != 1:
        head = args[0][1] if args and args[0][0] == "word" else ""
        what = f"unknown function {head!r}" if head[:1].isalpha() else "cannot evaluate"
        raise GoTemplateError(f"Go template: {what} in {' '.join(words)}")
    return _operand(args[0], dot, scopes)


def _operand(arg: tuple[str, Any], dot: Any, scopes: list[dict[str, Any]]) -> Any:
    kind, word = arg
    if kind == "value":
        return word
    if word[0] in '"`':
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), word[1:-1]) if word[0] == '"' \
            else word[1:-1]
    if word in ("true", "false"):
        return word == "true"
    if word == "nil":
        return None
    if re.fullmatch(r"-?\d+", word):
        return int(word)
    if word.startswith("$"):
        name, _, path = word.partition(".")
        scope = next((s for s in reversed(scopes) if name in s), None)
        if scope is None:
            raise GoTemplateError(f"Go template: undefined variable {name}")
        return _fields(scope[name], path)
    if word.startswith("."):
        return _fields(dot, word[1:])
    raise GoTemplateError(f"Go template: unknown function or value {word!r}")


def _fields(value: Any, path: str) -> Any:
    for name in filter(None, path.split(".")):
        value = value.get(name) if isinstance(value, dict) else getattr(value, name, None)
    return value


def _truth(value: Any) -> bool:
    return bool(value) if value is not None else False


def _show(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _and(*values: Any) -> Any:
    for value in values:
        if not _truth(value):
            return value
    return values[-1]


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        value = value[key]
    return value


def _or(*values: Any) -> Any:
    for value in values:
        if _truth(value):
            return value
    return values[-1]


_FUNCS = {
    "eq": lambda a, *bs: any(a == b for b in bs), "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    "and": _and, "or": _or, "not": lambda a: not _truth(a), "len": lambda a: len(a or []),
    "slice": lambda a, *ij: a[ij[0]:] if len(ij) == 1 else a[slice(*ij)], "index": _index,
}
