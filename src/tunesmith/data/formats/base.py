"""The format interface: how a dataset layout is recognised and turned into records."""

from __future__ import annotations

from collections.abc import Callable, Set
from dataclasses import dataclass
from typing import Any

from tunesmith.config.schema import DatasetSpec
from tunesmith.data.records import Record, Source
from tunesmith.data.rows import ParseContext

Scorer = Callable[[Set[str], DatasetSpec], int]
Parser = Callable[[dict[str, Any], Source, ParseContext], Record]


@dataclass(frozen=True)
class Format:
    """One input layout.

    ``score(keys, spec)`` is 0 when a row with these keys cannot be this format, otherwise
    the number of this format's key fields it has (the most specific format wins).
    ``parse(row, source, ctx)`` builds the record or raises ``FieldError``.
    ``hint`` lists the fields it expects, for "cannot detect the format" errors.
    """

    name: str
    hint: str
    score: Scorer
    parse: Parser


def has_all(keys: Set[str], *names: str) -> bool:
    return all(n in keys for n in names)
