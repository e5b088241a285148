"""The Data page's data: a run's audit report with the offending rows, and its tokenized rows.

Both come from the stages themselves on the run's resolved ``config.yaml``: the audit
(``tunesmith.audit.run``) and tokenization (``tunesmith.tokenize.run`` + the ``preview``
row views), so the page shows what training saw.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError

MAX_DRILL = 20  # offending rows shown per finding


def load(run_dir: Path) -> Any:
    """The run's resolved config (its ``config.yaml``)."""
    from tunesmith.config import load_config

    path = run_dir / "config.yaml"
    if not path.is_file():
        raise TunesmithError(f"{run_dir}: no config.yaml (not a run directory written by tunesmith train)")
    return load_config(str(path))


def version(run_dir: Path) -> tuple[int, ...]:
    """When the run's config, record and datasets last changed: the key of the cached views below (an
    audit or a tokenization of a large dataset takes a while; a page reload should not redo it)."""
    files = [run_dir / "config.yaml", run_dir / "run.json"]
    try:
        files += [Path(d.path) for d in load(run_dir).datasets if Path(d.path).exists()]
    except TunesmithError:
        pass
    return tuple(f.stat().st_mtime_ns if f.exists() else 0 for f in files)


def audit(run_dir: Path) -> dict[str, Any]:
    """The audit report of the run's datasets, each finding with up to ``MAX_DRILL`` offending rows."""
    return _audit(run_dir, version(run_dir))


def preview(run_dir: Path, rows: int = 5) -> dict[str, Any]:
    """The first ``rows`` tokenized training rows as ``(text, trained)`` segments, and the stats."""
    return _preview(run_dir, rows, version(run_dir))


@lru_cache(maxsize=8)
def _audit(run_dir: Path, _version: tuple[int, ...]) -> dict[str, Any]:
    from tunesmith.audit import run as run_audit
    from tunesmith.audit.report import location
    from tunesmith.data.pipeline import collect_splits

    config = load(run_dir)
    report = run_audit(config)
    records = {location(r): r for part in collect_splits(config).values() for r in part.records}
    findings = []
    for f in report.findings:
        rows = [{"location": loc, "record": records[loc].to_dict() if loc in records else None}
                for loc in f.locations[:MAX_DRILL]]
        findings.append({"finding": f, "rows": rows})
    return {"rows": report.rows, "findings": findings, "stats": report.stats,
            "counts": {s: report.count(s) for s in ("error", "warning", "info")}}


@lru_cache(maxsize=8)
def _preview(run_dir: Path, rows: int, _version: tuple[int, ...]) -> dict[str, Any]:
    from tunesmith.tokenize import run as tokenize
    from tunesmith.tokenize.chat import IGNORE
    from tunesmith.tokenize.preview import as_sequence, segments

    result = tokenize(load(run_dir))
    out = []
    for i, (row, source) in enumerate(zip(result.samples[:rows], result.sources)):
        ids, labels = as_sequence(row)
        out.append({"index": i, "source": source, "tokens": len(ids),
                    "trained": sum(1 for x in labels if x != IGNORE), "segments": segments(row, result.tokenizer)})
    return {"rows": out, "stats": result.stats}
