"""The check registry: every check is a function ``ctx -> Finding | None`` registered by name.

Check names are part of tunesmith's interface (JSON output, ``audit.skip``); each module in
``tunesmith.audit.checks`` registers its checks when imported.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from tunesmith.audit.context import AuditContext
from tunesmith.audit.report import Finding

CheckFn = Callable[[AuditContext], Finding | None]
# what a check may need beyond records: exact token lengths, the chat encoder; "lengths" (reads
# ctx.lengths, exact or estimated) is always met: the runner only runs such checks after the rest
NEEDS_REASON = {
    "tokenizer": "no tokenizer (audit a CONFIG with base_model, or pass --model)",
    "encoder": "no tokenizer to template the rows (audit a CONFIG with base_model, or pass --model)",
}


@dataclass(frozen=True)
class Check:
    name: str
    fn: CheckFn
    needs: tuple[str, ...]


_REGISTRY: dict[str, Check] = {}


def register(name: str, needs: tuple[str, ...] = ()) -> Callable[[CheckFn], CheckFn]:
    """Register ``fn`` as the check ``name``."""

    def wrap(fn: CheckFn) -> CheckFn:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise RuntimeError(f"audit check {name!r} registered twice")
        _REGISTRY[name] = Check(name, fn, needs)
        return fn

    return wrap


def all_checks() -> dict[str, Check]:
    """Every registered check, by name (imports the checks package on first use)."""
    package = importlib.import_module("tunesmith.audit.checks")
    for mod in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{mod.name}")
    return dict(_REGISTRY)


def missing_need(check: Check, ctx: AuditContext) -> str | None:
    """Why ``check`` cannot run on ``ctx`` (None when it can)."""
    for need in check.needs:
        if need == "tokenizer" and not ctx.lengths_exact:
            return NEEDS_REASON[need]
        if need == "encoder" and ctx.tokens is None:
            return NEEDS_REASON[need]
    return None
