"""What ``evaluate`` keeps in the run's ``eval/`` folder, so every figure traces back to its rows.

- ``eval_<name>.json``: every metric of every task (headline, format metric, health, categories,
  judge extras, rows excluded as contaminated), the probes' summary, the contamination summary.
- ``generations_<name>.jsonl``: one line per row: task, source (file:line), category, prompt,
  gold, reply, finish reason, reply tokens, right or wrong, its score and the scorer's detail
  (for a judge: the verdict, or why it failed).
- ``probes_<name>.jsonl``: one line per probe item; ``contamination.json``: every hit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def summary(result: Any) -> dict[str, Any]:
    """The content of ``eval_<name>.json`` for an ``EvalResult``."""
    tasks = {}
    for name, t in result.tasks.items():
        s = t.score
        tasks[name] = {"scorer": s.scorer, "n": s.n, "main": s.main, "format": s.format, "weak": s.weak,
                       "metrics": s.metrics, "health": s.health, "categories": s.categories, "extra": s.extra,
                       "excluded": t.excluded, "confusion": vars(s.confusion) if s.confusion else None,
                       "interval": s.interval.to_dict() if s.interval is not None else None}
    return {
        "name": result.name, "model": str(result.model_dir), "seconds": round(result.seconds, 2),
        "generated_tokens": result.generated_tokens, "tokens_per_s": round(result.tokens_per_s, 1),
        "cached_replies": result.cached_replies, "notes": result.notes, "tasks": tasks,
        "probes": result.probes.to_dict() if result.probes is not None else None,
        "contamination": ({k: v for k, v in result.contamination.to_dict().items() if k != "hits"}
                          if result.contamination is not None else None),
    }


def generations_path(eval_path: Path) -> Path:
    """The ``generations_<name>.jsonl`` written beside ``eval_<name>.json``."""
    return eval_path.with_name(eval_path.name.replace("eval_", "generations_", 1)).with_suffix(".jsonl")


def read_generations(eval_path: Path) -> list[dict[str, Any]]:
    """Every scored row written beside ``eval_path`` (none when the file is absent)."""
    gens = generations_path(eval_path)
    return [json.loads(line) for line in gens.read_text("utf-8").splitlines() if line.strip()] if gens.is_file() else []


def write(result: Any, out_dir: Path) -> list[Path]:
    """Write the files above; returns their paths."""
    from tunesmith.evaluate.probes import rows_jsonl

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"eval_{result.name}.json"
    path.write_text(json.dumps(summary(result), indent=2, default=str), "utf-8")
    files = [path]
    gens = out_dir / f"generations_{result.name}.jsonl"
    with gens.open("w", encoding="utf-8") as fh:
        for name, t in result.tasks.items():
            for row, scored in zip(t.rows, t.score.rows):
                fh.write(json.dumps({
                    "task": name, "source": row.source, "category": row.category, "prompt": row.prompt,
                    "gold": row.gold, "output": row.output, "finish_reason": row.finish_reason, "tokens": row.tokens,
                    "correct": scored.correct, "score": scored.score, "headline": scored.headline_value,
                    "detail": scored.detail,
                }, ensure_ascii=False, default=str) + "\n")
    files.append(gens)
    if result.probes is not None:
        probes = out_dir / f"probes_{result.name}.jsonl"
        probes.write_text("".join(line + "\n" for line in rows_jsonl(result.probes)), "utf-8")
        files.append(probes)
    if result.contamination is not None:
        hits = out_dir / "contamination.json"
        hits.write_text(json.dumps(result.contamination.to_dict(), indent=2), "utf-8")
        files.append(hits)
    return files


def write_generations(path: Path, rows_by_task: dict[str, Any]) -> Path:
    """Every generated row before scoring (``{task: (rows, excluded)}``); ``write`` replaces the
    file with the scored rows, so a scorer that fails (a judge that is down) loses no generation."""
    return write_jsonl(path, [{"task": task, "source": r.source, "category": r.category, "prompt": r.prompt,
                               "gold": r.gold, "output": r.output, "finish_reason": r.finish_reason,
                               "tokens": r.tokens}
                              for task, (rows, _) in rows_by_task.items() for r in rows])


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """One JSON object per line (pairwise verdicts and the like)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return path
