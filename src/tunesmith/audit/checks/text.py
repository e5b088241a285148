"""Text hygiene: broken encodings and personal data."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping

from tunesmith.audit.context import AuditContext
from tunesmith.audit.registry import register
from tunesmith.audit.report import Finding

_NON_ASCII = frozenset({"replacement characters (U+FFFD)", "mojibake"})
_ENCODING = {
    "control characters": r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]",
    "replacement characters (U+FFFD)": "\ufffd",
    # UTF-8 read as Latin-1/cp1252: "Ã©" for "é", "â€™" for "’", "ðŸ" for emoji, "Ð¿" for Cyrillic
    "mojibake": "â€|ðŸ|Ã[\u0080-\u00bf\u0152-\u0178\u2018-\u2122]|Â[\u0080-\u00bf]|[ÐÑ][\u0080-\u00bf]",
}


def _row_text(ctx: AuditContext, i: int) -> str:
    v = ctx.views
    return "\n".join((v.prompt[i], v.response[i], v.rejected[i]))


def _scan(ctx: AuditContext, patterns: Mapping[str, str], hints: Mapping[str, list[str]] | None = None,
          ascii_skip: frozenset[str] = frozenset(), ascii_hints: Mapping[str, list[str]] | None = None,
          ) -> dict[int, list[str]]:
    """Row index -> the kinds (pattern names) found in that row, for rows with any.

    A kind with ``hints`` is searched only in rows holding one of them; a kind with
    ``ascii_hints`` only in rows holding one of them or any non-ASCII character; kinds in
    ``ascii_skip`` cannot occur in pure-ASCII text and are not searched there.
    """
    compiled = {kind: re.compile(p) for kind, p in patterns.items()}
    hints = hints or {}
    ascii_hints = ascii_hints or {}
    out: dict[int, list[str]] = {}
    for i in range(len(ctx.records)):
        text = _row_text(ctx, i)
        plain = text.isascii()
        found = [
            kind for kind, rx in compiled.items()
            if not (plain and kind in ascii_skip)
            and (kind not in hints or any(map(text.__contains__, hints[kind])))
            and (not plain or kind not in ascii_hints or any(map(text.__contains__, ascii_hints[kind])))
            and rx.search(text)
        ]
        if found:
            out[i] = found
    return out


def _detail(found: Mapping[int, list[str]]) -> str:
    kinds = Counter(k for ks in found.values() for k in ks)
    return ", ".join(f"{n} with {kind}" for kind, n in kinds.most_common())


@register("encoding")
def encoding(ctx: AuditContext) -> Finding | None:
    """Mojibake, control characters and replacement characters."""
    found = _scan(ctx, _ENCODING, ascii_skip=_NON_ASCII)
    if not found:
        return None
    return Finding.for_rows(
        "encoding", "warning", ctx.rows(list(found)),
        f"{len(found)} row(s) have broken text ({_detail(found)}): the model learns to write it.",
        "Re-export the data as UTF-8 (or repair it, e.g. with ftfy) and strip control characters.",
    )


def _real_phone(text: str, rx: re.Pattern[str], min_digits: int) -> bool:
    return any(sum(c.isdigit() for c in m.group()) >= min_digits for m in rx.finditer(text))


@register("pii")
def pii(ctx: AuditContext) -> Finding | None:
    """E-mail addresses, phone numbers and API-key shaped strings."""
    g = ctx.g("pii")
    found = _scan(ctx, g["patterns"], g["hints"], ascii_hints=g["ascii_hints"])
    if "phone" in g["patterns"]:
        phone = re.compile(g["patterns"]["phone"])
        for i, kinds in found.items():
            if "phone" in kinds and not _real_phone(_row_text(ctx, i), phone, g["phone_min_digits"]):
                kinds.remove("phone")
    found = {i: kinds for i, kinds in found.items() if kinds}
    if not found:
        return None
    return Finding.for_rows(
        "pii", "warning", ctx.rows(list(found)),
        f"{len(found)} row(s) contain personal data or secrets ({_detail(found)}): a fine-tuned model "
        "can repeat them verbatim.",
        "Remove or mask them (e.g. <EMAIL>, <PHONE>) and revoke any real keys.",
    )
