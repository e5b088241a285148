"""Record builders for the audit tests: a varied, clean chat set and small defect plants."""

from __future__ import annotations

import random
from collections.abc import Sequence

from tunesmith.audit import AuditReport, Finding
from tunesmith.data.records import Message, Record, Source

OPENERS = (
    "Could you explain", "Please describe", "I wonder about", "Give me an overview of", "What do you know about",
    "Summarise for a beginner", "Teach me", "Why should I care about", "Walk me through", "Help me understand",
    "Briefly outline", "Tell a student about",
)
LEADS = ("Hi!", "Quick question:", "Hello there.", "Okay,", "So,", "Hey,", "For my class,", "Honestly,",
         "Dear assistant,", "Right, so", "Morning!", "One more thing:")
TONES = ("short", "clear", "friendly", "formal", "playful", "calm")
TOPICS = (
    "photosynthesis", "volcanoes", "the printing press", "tax brackets", "sourdough baking", "black holes",
    "the immune system", "jazz harmony", "sailing knots", "compound interest", "glaciers", "bridge design",
)
SENTENCES = tuple(
    f"{a} {b} {c}."
    for a, b, c in zip(
        ("Most people first notice", "Historians often point out", "A useful way to think about it is",
         "Engineers measure", "In practice you will see", "The key idea behind it concerns",
         "Beginners usually confuse", "Experts still debate", "A simple experiment shows",
         "Over the last century we learned", "The surprising part involves", "Textbooks tend to simplify") * 5,
        ("how energy flows", "why small changes add up", "where the limits are", "which parts matter most",
         "what happens under pressure", "when the process speeds up", "who benefits from it",
         "how the pieces connect", "why timing is crucial", "what can go wrong") * 6,
        ("in everyday life", "across many decades", "in a typical household", "during a busy season",
         "under careful observation", "with surprising regularity", "in very different cultures",
         "after enough repetition", "in the long run", "at every scale", "with a little patience",
         "for most learners", "in cold climates", "inside a laboratory", "on a small budget") * 4,
    )
)


def chat(row: int, user: str, answer: str, system: str | None = None, file: str = "train.jsonl",
         **extra: object) -> Record:
    messages = ([Message("system", system)] if system is not None else []) + [
        Message("user", user), Message("assistant", answer)]
    return Record("sft", Source(file, row, row), "chat", tuple(messages), **extra)  # type: ignore[arg-type]


def clean_chat(n: int = 120, file: str = "train.jsonl", seed: int = 0, start: int = 1) -> list[Record]:
    """Varied, well-formed English chat rows that no check should flag."""
    rng = random.Random(seed)
    rows, used = [], set()
    for k in range(n):
        opener, topic = OPENERS[k % len(OPENERS)], TOPICS[(k * 5 + k // len(OPENERS)) % len(TOPICS)]
        lead = rng.choice(LEADS)
        user = f"{lead} {opener.lower()} {topic}, case {rng.randint(1000, 9999)}, in a {rng.choice(TONES)} tone?"
        answer = " ".join(rng.sample(SENTENCES, 3))
        while answer in used:
            answer = " ".join(rng.sample(SENTENCES, 3))
        used.add(answer)
        rows.append(chat(start + k, user, answer, file=file))
    return rows


def replace(records: Sequence[Record], plants: dict[int, Record]) -> list[Record]:
    """``records`` with the rows at the given positions replaced (same source kept)."""
    out = list(records)
    for pos, record in plants.items():
        old = out[pos].source
        out[pos] = Record(record.kind, old, record.fmt, record.messages, record.tools, record.chosen,
                          record.rejected, record.label, record.text, record.weight, record.meta)
    return out


def where(records: Sequence[Record], positions: Sequence[int]) -> set[str]:
    return {f"{records[p].source.file}:{records[p].source.row}" for p in positions}


def finding(report: AuditReport, check: str) -> Finding:
    found = report.by_check().get(check)
    assert found is not None, f"{check} did not fire; findings: {[f.check for f in report.findings]}"
    return found


def fired(report: AuditReport) -> list[str]:
    return sorted(f.check for f in report.findings)
