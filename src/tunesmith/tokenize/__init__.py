"""Tokenization: records -> ``input_ids`` + ``labels`` for any Jinja chat template.

Trained spans are found from renders of the conversation (no ``{% generation %}`` markers,
no role strings), every trained sequence ends with an end-of-turn token, padding is masked by
position, packed samples are isolated, and the result is cached by data + tokenizer + settings.
"""

from tunesmith.tokenize.chat import (
    EncodedChat, EncodedPreference, EncodeMemo, encode_chat, encode_preference, end_of_turn_ids,
)
from tunesmith.tokenize.collate import Collator
from tunesmith.tokenize.run import TokenizeResult, run
from tunesmith.tokenize.spans import TemplateMismatch
from tunesmith.tokenize.tokenizer import builtin_templates, load_saved, load_tokenizer, tokenizer_fingerprint

__all__ = [
    "Collator",
    "EncodedChat",
    "EncodedPreference",
    "EncodeMemo",
    "TemplateMismatch",
    "TokenizeResult",
    "builtin_templates",
    "encode_chat",
    "encode_preference",
    "end_of_turn_ids",
    "load_saved",
    "load_tokenizer",
    "run",
    "tokenizer_fingerprint",
]
