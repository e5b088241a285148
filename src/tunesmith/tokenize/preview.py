"""Row views for ``tunesmith preview``: decoded text, trained text and trained spans.

The JSON shape is a stable interface: ``{"row", "input_ids", "labels", "text",
"trained_text", "trained_spans"}`` (+ ``source``; preference rows add ``rejected_ids`` and
``rejected_text``; kto rows add ``label``: true for a desirable completion).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tunesmith.tokenize.chat import IGNORE

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def runs(labels: Sequence[int]) -> list[tuple[int, int, bool]]:
    """Contiguous ``(start, end, trained)`` runs of a label sequence."""
    out: list[tuple[int, int, bool]] = []
    start = 0
    for k in range(1, len(labels) + 1):
        if k == len(labels) or (labels[k] != IGNORE) != (labels[start] != IGNORE):
            out.append((start, k, labels[start] != IGNORE))
            start = k
    return out


def as_sequence(row: dict[str, list[int]]) -> tuple[list[int], list[int]]:
    """``input_ids`` and ``labels`` of a row; a preference row shows prompt + chosen, a kto row
    prompt + completion."""
    if "completion_ids" in row:
        return row["prompt_ids"] + row["completion_ids"], [IGNORE] * len(row["prompt_ids"]) + row["completion_ids"]
    if "prompt_ids" in row:
        return row["prompt_ids"] + row["chosen_ids"], [IGNORE] * len(row["prompt_ids"]) + row["chosen_ids"]
    return row["input_ids"], row["labels"]


def segments(row: dict[str, list[int]], tokenizer: PreTrainedTokenizerBase) -> list[tuple[str, bool]]:
    """The row's text cut into decoded ``(text, trained)`` pieces, in order."""
    ids, labels = as_sequence(row)
    return [(_decode(tokenizer, ids[a:b]), trained) for a, b, trained in runs(labels)]


def row_view(index: int, row: dict[str, list[int]], source: str, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """The JSON object ``tunesmith preview --json`` prints for one row."""
    ids, labels = as_sequence(row)
    spans = [text for text, trained in segments(row, tokenizer) if trained]
    view: dict[str, Any] = {
        "row": index,
        "source": source,
        "input_ids": ids,
        "labels": labels,
        "text": _decode(tokenizer, ids),
        "trained_text": _decode(tokenizer, [t for t in labels if t != IGNORE]),
        "trained_spans": spans,
    }
    if "rejected_ids" in row:
        view["rejected_ids"] = row["rejected_ids"]
        view["rejected_text"] = _decode(tokenizer, row["rejected_ids"])
    if "label" in row:
        view["label"] = bool(row["label"][0])
    return view


def _decode(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> str:
    return str(tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False))
