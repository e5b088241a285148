"""Label leakage: the expected answer already stands verbatim in the user's prompt."""

from __future__ import annotations

from collections import Counter

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
    users: dict[int, str] = {}
    answers: dict[int, str] = {}
    for i, r in enumerate(ctx.records):
        if r.kind == "text" or is_rag(r.fmt, r.meta):
            continue
        users[i] = _norm(" ".join(m.content for m in r.messages if m.role == "user"))
        answers[i] = _norm(ctx.views.response[i])
    candidates = [i for i, answer in answers.items() if len(answer) >= g["min_chars"]
                  and len(answer.split()) >= g["min_words"] and answer in users[i]]
    boilerplate = _uninformative([answers[i] for i in candidates], users, answers)
    rows = [ctx.records[i] for i in candidates if answers[i] not in boilerplate]
    if not rows:
        return None
    return Finding.for_rows(
        "label_leakage", "warning", rows,
        f"{len(rows)} row(s) contain their expected answer verbatim in the prompt: the model learns to "
        "copy instead of answer, and evaluation on such rows is inflated.",
        "Remove the answer from the prompt (check the template that built these rows).",
    )


def _uninformative(answers_leaked: list[str], users: dict[int, str], answers: dict[int, str],
                   max_answers: int = 20, max_scan: int = 2000) -> set[str]:
    """The leaked answers (the ``max_answers`` most frequent that several rows share) that at least
    half of the prompts containing them (the first ``max_scan``) do not have as their answer:
    shared instruction text, not this row's answer."""
    out = set()
    for answer, n in Counter(answers_leaked).most_common(max_answers):
        if n < 2:
            break
        containing = other = 0
        for i, text in users.items():
            if answer in text:
                containing += 1
                other += answers[i] != answer
                if containing >= max_scan:
                    break
        if other * 2 >= containing:
            out.add(answer)
    return out
