"""Label leakage: the expected answer already stands verbatim in the user's prompt."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from tunesmith.audit.checks.rag import is_rag
from tunesmith.audit.context import AuditContext
from tunesmith.audit.registry import register
from tunesmith.audit.report import Finding


def _norm(text: str) -> str:
    """Whitespace collapsed, case folded: "verbatim" up to layout and capitals."""
    return " ".join(text.split()).casefold()


@register("label_leakage")
def label_leakage(ctx: AuditContext) -> Finding | None:
    """The answer (long enough to be no coincidence) is contained in a user turn of the same row.

    RAG rows are skipped (their answer is meant to be quoted from the context); system prompts and
    tool outputs are not searched. An answer that most prompts containing it do *not* have as their
    answer (a fixed phrase of an instruction, an option of a listed choice: "reply 'Not found' when
    ...") tells the model nothing about this row and is not reported.
    """
    g = ctx.g("label_leakage")
    candidates = [(i, answer) for i, user, answer in _rows(ctx) if len(answer) >= g["min_chars"]
                  and len(answer.split()) >= g["min_words"] and answer in user]
    boilerplate = _uninformative([answer for _, answer in candidates], ctx)
    rows = [ctx.records[i] for i, answer in candidates if answer not in boilerplate]
    if not rows:
        return None
    return Finding.for_rows(
        "label_leakage", "warning", rows,
        f"{len(rows)} row(s) contain their expected answer verbatim in the prompt: the model learns to "
        "copy instead of answer, and evaluation on such rows is inflated.",
        "Remove the answer from the prompt (check the template that built these rows).",
    )


def _rows(ctx: AuditContext) -> Iterator[tuple[int, str, str]]:
    """(index, user turns, answer), normalised, of every row searched (made as read, not kept)."""
    for i, r in enumerate(ctx.records):
        if r.kind == "text" or is_rag(r.fmt, r.meta):
            continue
        yield i, _norm(" ".join(m.content for m in r.messages if m.role == "user")), _norm(ctx.views.response[i])


def _uninformative(answers_leaked: list[str], ctx: AuditContext, max_answers: int = 20,
                   max_scan: int = 2000) -> set[str]:
    """The leaked answers (the ``max_answers`` most frequent that several rows share) that at least
    half of the prompts containing them (the first ``max_scan``) do not have as their answer:
    shared instruction text, not this row's answer. One pass over the rows for all of them."""
    shared = [answer for answer, n in Counter(answers_leaked).most_common(max_answers) if n >= 2]
    if not shared:
        return set()
    containing = dict.fromkeys(shared, 0)
    other = dict.fromkeys(shared, 0)
    for _, user, answer_i in _rows(ctx):
        for answer in shared:
            if containing[answer] < max_scan and answer in user:
                containing[answer] += 1
                other[answer] += answer_i != answer
        if all(n >= max_scan for n in containing.values()):
            break
    return {answer for answer in shared if other[answer] * 2 >= containing[answer]}
