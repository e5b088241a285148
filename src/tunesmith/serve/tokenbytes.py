"""The raw bytes of a token, for logprobs (``bytes``, and a ``token`` text that is never a lone U+FFFD).

A token can hold part of a UTF-8 character (byte-level BPE splits 中 into three tokens); decoding it
alone gives U+FFFD, whose bytes are not the token's. The bytes come from the token's piece instead:
byte-level tokenizers (GPT-2, Llama 3, Qwen) map each byte to one printable character (GPT-2's
``bytes_to_unicode``), sentencepiece-style ones write ``▁`` for a space and ``<0xE4>`` for a byte
(byte fallback). Special and added tokens are their text.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """The inverse of GPT-2's ``bytes_to_unicode`` (the ByteLevel pre-tokenizer's alphabet; transformers' own)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {c: b for b, c in bytes_to_unicode().items()}


def token_text(raw: bytes) -> str:
    """The token as text; part of a UTF-8 character is written ``bytes:\\xe4\\xb8`` (as OpenAI does)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


class TokenBytes:
    """``table(token_id)`` -> the token's bytes, for one tokenizer (cached per id)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.kind = _kind(tokenizer)
        added = getattr(tokenizer, "added_tokens_decoder", None) or {}
        self._cache: dict[int, bytes] = {int(i): str(t).encode("utf-8") for i, t in added.items()}

    def __call__(self, token_id: int) -> bytes:
        raw = self._cache.get(token_id)
        if raw is None:
            raw = self._cache[token_id] = self._bytes(token_id)
        return raw

    def _bytes(self, token_id: int) -> bytes:
        piece = self.tokenizer.convert_ids_to_tokens(token_id) if self.kind else None
        if isinstance(piece, str) and self.kind == "byte_level" and all(c in _byte_decoder() for c in piece):
            return bytes(_byte_decoder()[c] for c in piece)
        if isinstance(piece, str) and self.kind == "sentencepiece":
            byte = _BYTE_PIECE.fullmatch(piece)
            return bytes([int(byte.group(1), 16)]) if byte else piece.replace("▁", " ").encode("utf-8")
        return str(self.tokenizer.decode([token_id])).encode("utf-8")


def _kind(tokenizer: Any) -> str | None:
    """'byte_level', 'sentencepiece' or None (unknown: each token is decoded alone), from the fast tokenizer's
    decoder."""
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    try:
        spec = json.loads(decoder.__getstate__()) if decoder is not None else None
    except Exception:  # not a tokenizers decoder: decode each token alone
        return None
    types = set(_types(spec))
    if "ByteLevel" in types:
        return "byte_level"
    if types & {"ByteFallback", "Metaspace"} or ("Replace" in types and "▁" in json.dumps(spec, ensure_ascii=False)):
        return "sentencepiece"
    return None


def _types(spec: Any) -> list[str]:
    if not isinstance(spec, dict):
        return []
    return [str(spec.get("type")), *(t for child in spec.get("decoders") or [] for t in _types(child))]
