"""Run the audit: over records (``audit_records``) or over a run configuration (``run``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunesmith.config.schema import Config
from tunesmith.audit.context import SPLITS, AuditContext, LengthFn, TokenHooks, estimate_lengths
from tunesmith.audit.guidelines import load_guidelines
from tunesmith.audit.forked import Forked, can_fork
from tunesmith.audit.registry import NEEDS_REASON, Check, all_checks, missing_need
from tunesmith.audit.report import AuditReport, Finding
from tunesmith.data.pipeline import DataResult
from tunesmith.data.records import Record
from tunesmith.data.store import chain, on_disk
from tunesmith.errors import ConfigError, RowError, TunesmithError

_TOKEN_NEEDS = ("tokenizer", "encoder", "lengths")  # checks run after the token lengths are in
FORK_ROWS = 20_000  # from this many rows the token-free checks run in a child process (with a tokenizer)


def audit_records(
    train: Sequence[Record],
    eval: Sequence[Record] = (),
    test: Sequence[Record] = (),
    *,
    config: Config | None = None,
    token_lengths: LengthFn | None = None,
    tokens: TokenHooks | None = None,
    errors: Sequence[RowError] = (),
    skip: Collection[str] = (),
    fork: bool | None = None,
    load_tokens: Callable[[], TokenHooks | None] | None = None,
) -> AuditReport:
    """Run every check on the given splits.

    ``token_lengths`` (records -> token counts) or ``tokens`` (a tokenizer's hooks, see
    ``tokens.TokenizerHooks``) enable the token checks; without either, lengths are estimated
    (characters / 4) and ``over_length`` / ``missing_eos`` are skipped. ``errors`` are the
    ingestion errors the ``schema`` check reports. ``skip`` (plus ``config.audit.skip``) names
    checks not to run. ``load_tokens`` (in place of ``tokens``) makes the hooks once the checks
    that need no tokens have started (None: no tokenizer), so a tokenizer loads while they run.
    With ``tokens`` (or ``load_tokens``), the checks that need no tokens run in a forked child
    process while this one loads the tokenizer, renders and tokenizes (``forked.py``; Linux,
    records in memory, from ``FORK_ROWS`` rows or as ``fork`` says); the report is the same
    either way.
    """
    records = chain([train, eval, test])  # a list, or a view when the records are kept on disk
    split = ["train"] * len(train) + ["eval"] * len(eval) + ["test"] * len(test)
    ctx = AuditContext(records, split, load_guidelines(), config, list(errors), tokens=tokens)
    checks = _checks(set(skip) | set(config.audit.skip if config else ()))
    free = [c for c in checks if not c.waits]
    if fork is None:
        fork = len(records) >= FORK_ROWS
    # records kept on disk stay in one process: a child must not flush their file's write buffer too
    forking = (tokens is not None or load_tokens is not None) and fork and not on_disk(records) and can_fork()
    child = Forked(lambda: _run_checks(ctx, free)) if forking else None
    try:
        if tokens is None and load_tokens is not None:
            ctx.tokens = tokens = load_tokens()
        started = time.perf_counter()
        ctx.pending_lengths, ctx.lengths_exact = _start_lengths(records, token_lengths, tokens)
    except BaseException:
        if child is not None:
            child.cancel()
        raise
    ctx.stats["seconds"] = {"token_lengths": round(time.perf_counter() - started, 3)}
    done = child.result() if child is not None else _run_checks(ctx, free)
    ctx.stats.update(done.stats)  # what the checks added (already there when they ran here)
    ctx.stats["seconds"].update(done.seconds)
    rest = _run_checks(ctx, [c for c in checks if c.waits])
    ctx.stats["seconds"].update(rest.seconds)
    found, skipped = {**done.found, **rest.found}, {**done.skipped, **rest.skipped}
    ctx.stats["skipped_checks"] = {c.name: skipped[c.name] for c in checks if c.name in skipped}
    ctx.stats.update(_length_stats(ctx))
    ctx.stats["splits"] = {s: len(ctx.indices(s)) for s in SPLITS}
    return AuditReport(len(records), [found[c.name] for c in checks if c.name in found], ctx.stats)


def _start_lengths(
    records: Sequence[Record], token_lengths: LengthFn | None, tokens: TokenHooks | None
) -> tuple[Callable[[], Sequence[int]], bool]:
    """(a function returning the token lengths, whether they are exact). With a tokenizer the rows
    are rendered now and tokenized in a worker thread while the checks that need no tokens run."""
    if token_lengths is not None:
        return lambda: token_lengths(records), True
    if tokens is not None:
        return tokens.start_lengths(records), True
    return lambda: estimate_lengths(records), False


@dataclass(frozen=True)
class _Planned:
    """A check to run (or why not: ``skip``), and whether it waits for the token lengths."""

    name: str
    check: Check
    skip: str | None
    waits: bool


@dataclass
class _Done:
    """What running some checks gave: findings and skip reasons by check name, seconds per check,
    and the statistics the checks added to ``ctx.stats``."""

    found: dict[str, Finding] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


def _checks(skip: set[str]) -> list[_Planned]:
    """Every check in registry order; ``skip`` names checks not to run (unknown names are an error)."""
    checks = all_checks()
    unknown = sorted(skip - set(checks))
    if unknown:
        raise ConfigError(f"audit.skip: unknown check(s) {', '.join(unknown)} (checks: {', '.join(sorted(checks))})")
    return [_Planned(name, check, "skipped (audit.skip)" if name in skip else None,
                     any(n in _TOKEN_NEEDS for n in check.needs)) for name, check in checks.items()]


def _run_checks(ctx: AuditContext, checks: Sequence[_Planned]) -> _Done:
    done = _Done()
    before = set(ctx.stats)
    for planned in checks:
        reason = planned.skip or missing_need(planned.check, ctx)
        if reason:
            done.skipped[planned.name] = reason
            continue
        if ctx.pending_lengths is not None and planned.waits:
            started = time.perf_counter()
            ctx.lengths  # wait for the counts here, so the time is the token step's, not the check's
            ctx.stats["seconds"]["token_lengths"] = round(
                ctx.stats["seconds"]["token_lengths"] + time.perf_counter() - started, 3)
        started = time.perf_counter()
        finding = planned.check.fn(ctx)
        done.seconds[planned.name] = round(time.perf_counter() - started, 3)
        if finding is not None:
            done.found[planned.name] = finding
    done.stats = {k: v for k, v in ctx.stats.items() if k not in before}
    return done


def _length_stats(ctx: AuditContext) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split in ctx.present_splits():
        values = ctx.lengths[ctx.indices(split)]
        p50, p90, p99 = (int(round(float(np.percentile(values, q)))) for q in (50, 90, 99))
        out[split] = {"p50": p50, "p90": p90, "p99": p99, "max": int(values.max()), "total": int(values.sum())}
    return {"token_lengths": out, "token_lengths_exact": ctx.lengths_exact}


def run(
    config: Config, *, data: DataResult | None = None, tokenize: bool = True, tokenizer: Any | None = None,
    memo: Any | None = None,
) -> AuditReport:
    """Audit the datasets of a run with the run's tokenizer.

    Without ``data`` the datasets are ingested here, collecting bad rows instead of raising
    (even under ``on_bad_rows: error``), and the validation set is split off like
    ``tunesmith.data.run`` does; with ``data`` (``tunesmith.data.run``'s result) those records and
    errors are audited. The tokenizer is loaded from ``base_model`` unless given
    (``tokenize=False``: none, token checks skipped); when it cannot be loaded the token checks
    are skipped and the reason is recorded in ``stats['tokenizer_error']``. ``memo``
    (``tunesmith.tokenize.chat.EncodeMemo``) keeps the encodings for tokenization to reuse.
    """
    if data is None:
        data = _ingest(config)
    problems: list[str] = []
    unfit: list[str] = []

    def load() -> TokenHooks | None:  # called by audit_records once the token-free checks run
        hooks, problem = _hooks(config, tokenizer, memo)
        problems.extend([problem] if problem else [])
        why = _template_problem(config, hooks.tokenizer, data) if hooks is not None else None
        unfit.extend([why] if why else [])
        return None if why else hooks  # lengths through a template that does not fit would mislead

    report = audit_records(data.train, data.eval, data.test, config=config, errors=data.errors,
                           load_tokens=load if tokenize else None)
    report.stats["formats"] = data.formats
    if problems:
        report.stats["tokenizer_error"] = problems[0]
        skipped = report.stats["skipped_checks"]  # not "pass --model": it was given and did not load
        for name, why in skipped.items():
            if why in NEEDS_REASON.values():
                skipped[name] = f"the tokenizer did not load ({problems[0]})"
    if unfit:  # what train and preview refuse before any work: an error here too
        report.findings.append(Finding("chat_template", "error", len(data.train) + len(data.eval), unfit[0],
                                       "Fix chat_template as the message says; the token checks were skipped."))
        report.__post_init__()  # worst first again
    return report


def _template_problem(config: Config, tokenizer: Any, data: DataResult) -> str | None:
    """Why the chat template does not fit the tokenizer or the data (another family's template, system prompts
    or tool calls it leaves out), as tokenization refuses it, or None."""
    from tunesmith.config.methods import method_spec
    from tunesmith.tokenize.template_fit import check_for_data

    if method_spec(config.method).rows == "text":
        return None
    try:
        check_for_data(tokenizer, config.chat_template, config.system_prompt, data.train, data.eval)
    except ConfigError as exc:
        return str(exc)
    return None


def _ingest(config: Config) -> DataResult:
    """Like ``tunesmith.data.run`` but every bad row is collected, none raised, nothing written."""
    from tunesmith.data.pipeline import collect_splits, formats_of, validation_split
    from tunesmith.data.store import take

    parts = collect_splits(config)
    train = parts["train"].records
    evals = parts["eval"].records if "eval" in parts else []
    if not evals and len(train) > 1:
        keep, held, _ = validation_split(config, train, evals)
        train, evals = take(train, keep), take(train, held)  # type: ignore[arg-type]
    return DataResult(
        train=train, eval=evals, test=parts["test"].records if "test" in parts else [],
        fingerprint="", formats=formats_of(parts),
        errors=[r.error for part in parts.values() for r in part.rejected],
    )


def _hooks(config: Config, tokenizer: Any | None, memo: Any | None = None) -> tuple[TokenHooks | None, str | None]:
    from tunesmith.audit.tokens import TokenizerHooks
    from tunesmith.tokenize import load_tokenizer

    if tokenizer is None:
        try:
            tokenizer = load_tokenizer(config.base_model, config.chat_template, config.special_tokens)
        except TunesmithError as exc:
            return None, str(exc)
    return TokenizerHooks(tokenizer, config, memo), None
