"""What an audit returns: findings (one per check that fired) and dataset statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tunesmith.data.records import Record
from tunesmith.errors import TunesmithError

Severity = Literal["error", "warning", "info"]
FailOn = Literal["error", "warning", "never"]
SEVERITY_ORDER: dict[str, int] = {"error": 0, "warning": 1, "info": 2}
MAX_EXAMPLES = 5


def location(record: Record) -> str:
    """Where a record is: ``file:line`` where the file has lines (its first line), else ``file[row N]``."""
    return str(record.source)


@dataclass(frozen=True)
class Finding:
    """One check that fired: how bad, how many rows, where, what it means, how to fix it.

    ``locations`` keeps every affected row (``file:row``); ``examples`` shows the first five.
    """

    check: str
    severity: Severity
    count: int
    message: str
    fix: str
    locations: tuple[str, ...] = ()

    @property
    def examples(self) -> tuple[str, ...]:
        return self.locations[:MAX_EXAMPLES]

    @classmethod
    def for_rows(
        cls, check: str, severity: Severity, rows: Sequence[Record], message: str, fix: str
    ) -> Finding:
        """A finding whose count is the number of ``rows`` and whose examples are their locations."""
        return cls(check, severity, len(rows), message, fix, tuple(location(r) for r in rows))

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "count": self.count,
            "examples": list(self.examples),
            "message": self.message,
            "fix": self.fix,
        }


@dataclass
class AuditReport:
    """All findings of one audit, worst first, plus statistics (sizes, token lengths per split...)."""

    rows: int
    findings: list[Finding]
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.findings.sort(key=lambda f: (SEVERITY_ORDER[f.severity], f.check))

    def by_check(self) -> dict[str, Finding]:
        return {f.check: f for f in self.findings}

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def blocking(self, fail_on: FailOn) -> list[Finding]:
        """The findings that stop a run under ``fail_on`` (errors; also warnings for ``warning``)."""
        levels = {"error": ("error",), "warning": ("error", "warning"), "never": ()}[fail_on]
        return [f for f in self.findings if f.severity in levels]

    def fails(self, fail_on: FailOn) -> bool:
        """Whether this report should stop a run under ``fail_on``."""
        return bool(self.blocking(fail_on))

    def enforce(self, fail_on: FailOn) -> None:
        """Raise :class:`AuditFailed` when the report fails under ``fail_on``."""
        if self.fails(fail_on):
            raise AuditFailed(self, fail_on)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "findings": [f.to_dict() for f in self.findings], "stats": self.stats}


class AuditFailed(TunesmithError):
    """The data audit found problems at or above the ``fail_on`` severity."""

    def __init__(self, report: AuditReport, fail_on: FailOn = "error"):
        self.report = report
        blocking = report.blocking(fail_on)
        lines = [f"data audit failed ({len(blocking)} finding(s) at or above '{fail_on}'):"]
        lines += [f"  {f.check} [{f.severity}] {f.count} row(s): {f.message} Fix: {f.fix}" for f in blocking]
        lines.append("(run `tunesmith audit CONFIG` for details; set audit: {fail_on: never} to train anyway)")
        super().__init__("\n".join(lines))
