"""``response_format`` -> an llguidance grammar, and the per-step token mask that enforces it.

The mask is computed from the grammar's state before every sampled token, so a reply that
finishes (``finish_reason: stop``) always parses and validates against the schema; only a reply
cut by ``max_tokens`` (``finish_reason: length``) can be incomplete, as with any OpenAI server.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import torch

from tunesmith.serve.errors import APIError

# JSON with at most one space between tokens: compact or json.dumps-style, never unbounded
# whitespace a small model could loop in. A schema's own "x-guidance" key overrides this.
JSON_DEFAULTS = {"whitespace_pattern": "[ ]?"}
_BITS = torch.arange(32, dtype=torch.int32)


def compile_format(response_format: dict[str, Any] | None) -> str | None:
    """The llguidance grammar for a request's ``response_format`` (None for text); 400 when invalid."""
    if not response_format or response_format.get("type") in (None, "text"):
        return None
    return _compile(json.dumps(response_format))  # key order kept: it is the order properties are written in


@functools.lru_cache(maxsize=256)  # clients repeat the same schema; errors are not cached
def _compile(text: str) -> str:
    from llguidance import LLMatcher

    response_format = json.loads(text)
    kind = response_format.get("type")
    if kind == "json_object":
        schema: Any = {"type": "object"}
    elif kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
            raise APIError(400, "response_format.json_schema must be an object with a 'schema' object",
                           param="response_format.json_schema")
        schema = spec.get("schema", {})
        _check_schema(schema)
    else:
        raise APIError(400, f"response_format.type '{kind}' is not one of text, json_object, json_schema",
                       param="response_format.type")
    try:
        grammar = LLMatcher.grammar_from_json_schema(json.dumps(schema), defaults=JSON_DEFAULTS)
    except ValueError as exc:
        raise APIError(400, f"response_format: {exc}", param="response_format") from None
    error = LLMatcher.validate_grammar(grammar)
    if error and not error.startswith("WARNING"):
        raise APIError(400, f"response_format.json_schema.schema: {error}", param="response_format.json_schema")
    return grammar


def _check_schema(schema: dict[str, Any]) -> None:
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise APIError(400, f"response_format.json_schema.schema{'/' + where if where else ''}: {exc.message}",
                       param="response_format.json_schema") from None


class Grammars:
    """llguidance tokenizers (expensive to build) cached per (tokenizer, stop ids)."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size
        # the tokenizer object is kept in the value so its id() is never reused for another one
        self._tokenizers: dict[tuple[int, tuple[int, ...]], tuple[Any, Any]] = {}

    def matcher(self, grammar: str, tokenizer: Any, eos_ids: list[int]) -> Any:
        from llguidance import LLMatcher

        matcher = LLMatcher(self._lltokenizer(tokenizer, eos_ids), grammar, log_level=0)
        if matcher.is_error():
            raise APIError(400, f"response_format: {matcher.get_error()}", param="response_format")
        return matcher

    def _lltokenizer(self, tokenizer: Any, eos_ids: list[int]) -> Any:
        key = (id(tokenizer), tuple(eos_ids))
        if key not in self._tokenizers:
            from llguidance.hf import from_tokenizer

            lltok = from_tokenizer(tokenizer, n_vocab=self.vocab_size, eos_token=list(eos_ids))
            self._tokenizers[key] = (tokenizer, lltok)
        return self._tokenizers[key][1]


def allowed(matcher: Any, vocab_size: int) -> torch.Tensor:
    """Boolean ``[vocab]``: the tokens the grammar allows next."""
    words = torch.frombuffer(bytearray(matcher.compute_bitmask()), dtype=torch.int32)
    bits = (words.unsqueeze(1) >> _BITS) & 1
    return bits.flatten()[:vocab_size].bool()
