"""The contamination guard: eval rows that also stand in the run's training data.

Before any generation every eval task's rows are compared with the training data
(``datasets`` and ``eval_datasets``): an exact copy (the same normalised prompt, or the same
prompt + answer) or a near copy (MinHash + exact Jaccard of word 2-gram shingles >= the
threshold, the audit's own code and settings). ``contamination.action``: ``exclude`` drops those
rows from scoring (and says how many), ``fail`` stops the run listing them, ``report`` only lists
them. The list is written to ``eval/contamination.json``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tunesmith.config import Config
from tunesmith.data.records import Record, row_locations
from tunesmith.data.store import Chained
from tunesmith.errors import TunesmithError


class ContaminationError(TunesmithError):
    """Eval rows stand in the training data and ``contamination.action`` is ``fail``."""


@dataclass(frozen=True)
class Hit:
    """An eval row (task, file:line) found in the training data (file:line), exactly or nearly."""

    task: str
    source: str
    train_source: str
    kind: str  # "exact" | "near"
    similarity: float


@dataclass
class ContaminationReport:
    action: str
    threshold: float
    train_rows: int
    checked: int
    hits: list[Hit] = field(default_factory=list)

    def by_task(self, task: str) -> list[Hit]:
        return [h for h in self.hits if h.task == task]

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "threshold": self.threshold, "train_rows": self.train_rows,
                "checked": self.checked, "contaminated": len(self.hits), "hits": [asdict(h) for h in self.hits]}


def _texts(record: Record) -> tuple[str, str]:
    """(prompt, answer) of a record without system turns, each whitespace-collapsed and casefolded."""
    def norm(text: str) -> str:
        return " ".join(text.split()).casefold()

    if record.kind == "text":
        return "", norm(record.text or "")
    turns = [m for m in record.messages if m.role != "system"]
    answer = record.chosen[-1].content if record.kind == "preference" and record.chosen else ""
    if record.kind != "preference" and turns and turns[-1].role == "assistant":
        answer, turns = turns[-1].content, turns[:-1]
    return norm("\n".join(m.content for m in turns)), norm(answer)


class _Joined(Sequence[str]):
    """``f"{prompt}\n{answer}"`` of each record, made when read (the near-duplicate search reads
    shards of them): a million training rows are never held as texts."""

    def __init__(self, records: Sequence[Record]):
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return ["\n".join(_texts(r)) for r in self.records[index]]
        return "\n".join(_texts(self.records[index]))


def _exact(train: Iterable[Record], queries: Sequence[tuple[str, str]]) -> dict[int, int]:
    """For each query ``k`` (prompt, answer): the first training row with the same prompt and
    answer, else the first with the same non-empty prompt. The training rows are read once, in
    order; only the queries' texts are held."""
    by_pair: dict[str, list[int]] = {}
    by_prompt: dict[str, list[int]] = {}
    for k, (p, a) in enumerate(queries):
        by_pair.setdefault(f"{p}\x00{a}", []).append(k)
        if p:
            by_prompt.setdefault(p, []).append(k)
    pair_hit: dict[int, int] = {}
    prompt_hit: dict[int, int] = {}
    for i, record in enumerate(train):
        p, a = _texts(record)
        for k in by_pair.get(f"{p}\x00{a}", ()):
            pair_hit.setdefault(k, i)
        for k in by_prompt.get(p, ()) if p else ():
            prompt_hit.setdefault(k, i)
    return {k: pair_hit.get(k, prompt_hit.get(k)) for k in sorted(pair_hit.keys() | prompt_hit.keys())}


def check(config: Config, tasks: dict[str, Sequence[Record]]) -> ContaminationReport:
    """Compare every eval row of ``tasks`` with the training data; ``fail`` raises ``DataError``.
    The training rows are streamed (kept on disk past ``data.store.SPILL_ROWS``, never held as texts)."""
    from tunesmith.data import ingest
    from tunesmith.audit.guidelines import load_guidelines
    from tunesmith.audit.minhash import near_duplicates, with_copies

    settings = config.contamination
    threshold = settings.threshold or config.audit.near_duplicate_threshold
    train = ingest(list(config.datasets) + list(config.eval_datasets), method=config.method,
                   on_bad_rows="skip").records
    evals = [(task, r) for task, rows in tasks.items() for r in rows]
    where = [w for rows in tasks.values() for w in row_locations([r.source for r in rows])]
    report = ContaminationReport(settings.action, threshold, len(train), len(evals))
    eval_texts = [_texts(r) for _, r in evals]
    found: dict[int, Hit] = {}
    for k, i in _exact(train, eval_texts).items():
        found[k] = Hit(evals[k][0], where[k], str(train[i].source), "exact", 1.0)
    g = load_guidelines()["near_duplicate"]
    joined = Chained([_Joined(train), [f"{p}\n{a}" for p, a in eval_texts]])
    n = len(train)
    for i, j, sim in with_copies(near_duplicates(joined, threshold, ngram=g["ngram"], num_perm=g["num_perm"],
                                                 margin=g["lsh_margin"], seed=g["seed"])):
        if i < n <= j and (j - n) not in found:
            found[j - n] = Hit(evals[j - n][0], where[j - n], str(train[i].source), "near", round(sim, 4))
    report.hits = [found[k] for k in sorted(found)]
    if report.hits and settings.action == "fail":
        raise ContaminationError(_failure(report, len(evals)))
    return report


def _failure(report: ContaminationReport, evals: int) -> str:
    lines = [f"{h.source}: eval task {h.task!r}: {h.kind} copy of training row {h.train_source} "
             f"(Jaccard {h.similarity:.2f})" for h in report.hits[:20]]
    more = [f"... and {len(report.hits) - 20} more"] if len(report.hits) > 20 else []
    return "\n".join([f"{len(report.hits)} of {evals} eval rows also stand in the training "
                      "data (contamination.action: fail):", *lines, *more,
                      "(remove them, or set contamination.action: exclude to score without them)"])


def keep(report: ContaminationReport, task: str, records: Sequence[Record]) -> list[Record]:
    """The task's rows to score: all of them, or (``exclude``) those not found in the training data."""
    if report.action != "exclude":
        return list(records)
    bad = {h.source for h in report.by_task(task)}
    return [r for r, at in zip(records, row_locations([r.source for r in records])) if at not in bad]


def training_rows_in(train: Sequence[Record], evals: Sequence[Record], threshold: float) -> dict[int, tuple[int, str, float]]:
    """Every training row that is an exact or near copy of an eval row (the same tests as ``check``,
    from the training side): train index -> (eval index, "exact" | "near", Jaccard)."""
    from tunesmith.audit.guidelines import load_guidelines
    from tunesmith.audit.minhash import near_duplicates, with_copies

    eval_texts = [_texts(r) for r in evals]
    prompts = {p: j for j, (p, _) in reversed(list(enumerate(eval_texts))) if p}
    pairs = {f"{p}\x00{a}": j for j, (p, a) in reversed(list(enumerate(eval_texts)))}
    found: dict[int, tuple[int, str, float]] = {}
    for i, record in enumerate(train):  # streamed: the training rows are never held as texts
        p, a = _texts(record)
        j = pairs.get(f"{p}\x00{a}", prompts.get(p) if p else None)
        if j is not None:
            found[i] = (j, "exact", 1.0)
    g = load_guidelines()["near_duplicate"]
    n = len(train)
    joined = Chained([_Joined(train), [f"{p}\n{a}" for p, a in eval_texts]])
    for i, j, sim in with_copies(near_duplicates(joined, threshold, ngram=g["ngram"], num_perm=g["num_perm"],
                                                 margin=g["lsh_margin"], seed=g["seed"])):
        if i < n <= j and i not in found:
            found[i] = (j - n, "near", round(sim, 4))
    return found
