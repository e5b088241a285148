"""What ``tunesmith data inspect`` reports: format, counts, roles, lengths, examples."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from tunesmith.config.schema import DatasetSpec
from tunesmith.data.ingest import IngestResult, ingest
from tunesmith.data.records import Record
from tunesmith.errors import ConfigError


def inspect_path(path: str, type_: str = "auto", examples: int = 3) -> dict[str, Any]:
    """Ingest one path (bad rows raise DataError) and summarise it."""
    if not path.strip():
        raise ConfigError("PATH: must not be empty")
    spec = DatasetSpec.model_validate({"path": path, "type": type_})
    return summarize(path, ingest([spec]), examples)


def summarize(path: str, result: IngestResult, examples: int = 3) -> dict[str, Any]:
    """``{"path", "format", "rows", "kind_counts", "roles", "lengths", "examples"}``."""
    roles: Counter[str] = Counter()
    lengths: dict[str, list[int]] = defaultdict(list)
    for record in result.records:
        for role, size in _turn_lengths(record):
            roles[role] += 1
            lengths[role].append(size)
    return {
        "path": path,
        "format": ", ".join(sorted(set(result.formats.values()))),
        "rows": len(result.records),
        "kind_counts": dict(Counter(r.kind for r in result.records)),
        "roles": dict(roles),
        "lengths": {role: _spread(sizes) for role, sizes in lengths.items()},
        "examples": [r.to_dict() for r in result.records[:examples]],
    }


def _turn_lengths(record: Record) -> list[tuple[str, int]]:
    """(role, characters) of every turn; a text record counts as one ``text`` turn."""
    if record.text is not None:
        return [("text", len(record.text))]
    turns = record.messages + record.chosen + record.rejected
    return [(m.role, len(m.content)) for m in turns]


def _spread(sizes: list[int]) -> dict[str, int]:
    ordered = sorted(sizes)
    return {"min": ordered[0], "p50": ordered[len(ordered) // 2], "max": ordered[-1]}
