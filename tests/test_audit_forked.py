"""With a tokenizer, the checks that need no tokens may run in a forked child while the parent
renders and tokenizes: the report (findings, statistics, ingestion errors with their file:line)
is the same as when everything runs in one process, and a failing child changes nothing."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from audit_rows import chat, clean_chat, replace
from tiny import build_tokenizer

from tunesmith.audit import audit_records, runner
from tunesmith.audit.forked import Forked, can_fork
from tunesmith.audit.tokens import TokenizerHooks
from tunesmith.config import config_from_dict
from tunesmith.data.records import Message, Record, Source
from tunesmith.errors import ConfigError, RowError
from tunesmith.tokenize.tokenizer import template_text

pytestmark = pytest.mark.skipif(not can_fork(), reason="the audit forks only on Linux")
CONFIG = {"base_model": "m", "datasets": [{"path": "train.jsonl"}], "sequence_len": 64}


@pytest.fixture(scope="module")
def hooks(tmp_path_factory: pytest.TempPathFactory) -> TokenizerHooks:
    tok = build_tokenizer(tmp_path_factory.mktemp("tok"), template_text("chatml"), ["<|im_start|>", "<|im_end|>"])
    return TokenizerHooks(tok, config_from_dict(CONFIG))


def _planted() -> tuple[list[Record], list[Record]]:
    base = clean_chat(200)
    long = " ".join(["A rather long answer that goes on and on."] * 12)
    train = replace(base, {
        3: chat(0, "Who do I contact, case 3?", "Write to jane.doe@example.org for details."),
        7: base[2],  # exact duplicate
        11: chat(0, "Tell me, case 11?", "It stops in the middle of the"),
        15: chat(0, "Erkläre Vulkane, Fall 15?", "Die Vulkane sind ein wichtiges Thema, und es ist nicht einfach, "
                                                 "sie mit den Kindern zu erklären, aber wir werden es versuchen."),
        21: chat(0, "Long one, case 21?", long),  # over sequence_len
        25: chat(0, "Empty, case 25?", " "),
        30: Record("sft", Source("train.jsonl", 31, 31), "chat",
                   (Message("assistant", "I speak first."), Message("user", "ok"), Message("assistant", "Fine."))),
    })
    return train, clean_chat(30, file="eval.jsonl", seed=4) + [train[40]]


def _report(hooks: TokenizerHooks, fork: bool) -> dict[str, Any]:
    train, evals = _planted()
    errors = [RowError("train.jsonl", 77, "messages", "not a list", line=77)]
    report = audit_records(train, evals, config=config_from_dict(CONFIG), tokens=hooks, errors=errors, fork=fork)
    stats = {k: v for k, v in report.stats.items() if k != "seconds"}
    return {"findings": [f.__dict__ for f in report.findings], "stats": stats, "steps": list(report.stats["seconds"])}


@pytest.fixture()
def single_threaded() -> None:
    """The runner forks only in a single-threaded process: tqdm's monitor thread, which an earlier
    test's progress bar leaves running for the life of the process, is stopped first (tqdm starts
    it again when a bar needs it); any other thread still running is a leak this names."""
    from tqdm._monitor import TMonitor

    for thread in threading.enumerate():
        if isinstance(thread, TMonitor):
            thread.exit()
    others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
    assert not others, f"threads left running by earlier tests keep the audit from forking: {others}"


@pytest.fixture()
def children(single_threaded: None, monkeypatch: pytest.MonkeyPatch) -> list[Forked[Any]]:
    """Every child the runner forks, recorded (the runner's ``Forked`` replaced by a recording subclass)."""
    started: list[Forked[Any]] = []

    class Seen(Forked):  # type: ignore[type-arg]
        def __init__(self, fn: Any):
            super().__init__(fn)
            started.append(self)

    monkeypatch.setattr(runner, "Forked", Seen)
    return started


def test_forked_audit_equals_the_single_process_one(hooks: TokenizerHooks, children: list[Forked[Any]]) -> None:
    forked = _report(hooks, fork=True)
    assert len(children) == 1 and children[0].from_child  # the checks' results came from the child
    single = _report(hooks, fork=False)
    assert len(children) == 1
    assert forked == single
    checks = {f["check"] for f in forked["findings"]}
    assert {"pii", "exact_duplicate", "truncated_response", "language_mix", "over_length", "empty_response",
            "split_contamination", "schema"} <= checks
    schema = next(f for f in forked["findings"] if f["check"] == "schema")
    assert list(schema["locations"]) == ["train.jsonl:77"]


def test_unknown_skipped_check_is_an_error_before_forking(hooks: TokenizerHooks) -> None:
    with pytest.raises(ConfigError, match="unknown check"):
        audit_records(clean_chat(10), tokens=hooks, skip=["nope"], fork=True)


class _Boom(Exception):
    pass


def _fails() -> int:
    raise _Boom("in the check")


def test_forked_function_error_is_raised_here_as_without_a_child() -> None:
    with pytest.raises(_Boom, match="in the check"):
        Forked(_fails).result()


def test_result_that_does_not_pickle_is_computed_here() -> None:
    import os

    parent = os.getpid()
    value = Forked(lambda: (lambda: os.getpid())).result()  # a lambda does not pickle: made again here
    assert value() == parent
    assert Forked(lambda: os.getpid()).result() != parent  # a plain result comes from the child


def test_no_fork_while_other_threads_run(single_threaded: None) -> None:
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        assert not can_fork()
    finally:
        stop.set()
        worker.join()
    assert can_fork()


def test_records_on_disk_are_audited_in_one_process(hooks: TokenizerHooks, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunesmith.data.store import RowStore

    def no_fork(fn: Any) -> None:
        raise AssertionError("forked with records on disk")

    rows = clean_chat(40)
    monkeypatch.setattr(runner, "Forked", no_fork)
    on_disk = audit_records(RowStore(rows), config=config_from_dict(CONFIG), tokens=hooks, fork=True)
    in_memory = audit_records(rows, config=config_from_dict(CONFIG), tokens=hooks, fork=False)
    assert [f.__dict__ for f in on_disk.findings] == [f.__dict__ for f in in_memory.findings]


def test_child_is_stopped_when_rendering_fails(hooks: TokenizerHooks, children: list[Forked[Any]],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(records: Any) -> Any:
        raise ConfigError("chat_template: cannot render")

    monkeypatch.setattr(hooks, "start_lengths", broken)
    with pytest.raises(ConfigError, match="cannot render"):
        audit_records(clean_chat(40), config=config_from_dict(CONFIG), tokens=hooks, fork=True)
    assert len(children) == 1 and not children[0]._process.is_alive()


def test_tokenizer_loads_while_the_forked_checks_run(hooks: TokenizerHooks, children: list[Forked[Any]]) -> None:
    """``load_tokens`` is called once the child runs the token-free checks (the tokenizer loads on this
    core while they run on the other), and the report equals the one with the hooks given up front."""
    import multiprocessing

    train, evals = _planted()
    seen: list[int] = []

    def load() -> TokenizerHooks:
        seen.append(len(multiprocessing.active_children()))
        return hooks

    late = audit_records(train, evals, config=config_from_dict(CONFIG), load_tokens=load, fork=True)
    assert seen == [1] and len(children) == 1 and children[0].from_child
    given = audit_records(train, evals, config=config_from_dict(CONFIG), tokens=hooks, fork=False)
    assert [f.__dict__ for f in late.findings] == [f.__dict__ for f in given.findings]
    assert {k: v for k, v in late.stats.items() if k != "seconds"} == \
        {k: v for k, v in given.stats.items() if k != "seconds"}
    assert late.stats["token_lengths_exact"] and "over_length" in {f.check for f in late.findings}


def test_no_tokenizer_from_the_loader_skips_the_token_checks(children: list[Forked[Any]]) -> None:
    train, evals = _planted()
    report = audit_records(train, evals, config=config_from_dict(CONFIG), load_tokens=lambda: None, fork=True)
    plain = audit_records(train, evals, config=config_from_dict(CONFIG), fork=False)
    assert len(children) == 1 and children[0].from_child
    assert [f.__dict__ for f in report.findings] == [f.__dict__ for f in plain.findings]
    assert not report.stats["token_lengths_exact"] and "over_length" in report.stats["skipped_checks"]
