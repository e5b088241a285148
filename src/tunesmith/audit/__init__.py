"""The data doctor: checks a dataset for the mistakes that silently ruin a fine-tune.

``run(config)`` audits a run's datasets (train calls it before spending GPU time);
``audit_records(train, eval=..., test=...)`` audits records directly. Each check is a small
function registered by name in ``tunesmith.audit.checks``; thresholds and size
guidelines live in ``guidelines.yaml``.
"""

from tunesmith.audit.registry import all_checks
from tunesmith.audit.report import AuditFailed, AuditReport, Finding
from tunesmith.audit.runner import audit_records, run


def check_names() -> list[str]:
    """The stable names of every check, sorted."""
    return sorted(all_checks())


__all__ = ["AuditFailed", "AuditReport", "Finding", "audit_records", "check_names", "run"]
