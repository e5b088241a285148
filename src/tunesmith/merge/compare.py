"""Score the merged model and every source on every source's eval tasks, side by side.

The table answers the two questions a merge raises: which task does each source win, and how
much of the winner's score does the merge keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.merge.sources import Source

MERGED = "merged"


@dataclass
class TaskRow:
    """One eval task (of the source ``owner``): each model's headline metric."""

    owner: str
    task: str
    metric: str
    scores: dict[str, float]  # source label (and "merged") -> headline metric

    def best(self, labels: list[str]) -> str:
        """The source that wins this task (the first on a tie)."""
        return max(labels, key=lambda label: (self.scores[label], -labels.index(label)))

    def kept(self, labels: list[str]) -> float | None:
        """Merged score / best source score (None when the best source scores 0)."""
        top = self.scores[self.best(labels)]
        return self.scores[MERGED] / top if top > 0 else None


@dataclass
class Comparison:
    labels: list[str]
    rows: list[TaskRow]

    def table(self) -> str:
        """Plain-text table: task, each source, merged, which source wins, what the merge keeps."""
        head = ["task", *self.labels, MERGED, "best source", "merge keeps"]
        body = []
        for row in self.rows:
            kept = row.kept(self.labels)
            body.append([f"{row.owner}/{row.task} ({row.metric})", *[f"{row.scores[k]:.3f}" for k in self.labels],
                         f"{row.scores[MERGED]:.3f}", row.best(self.labels),
                         "n/a (best is 0)" if kept is None else f"{kept:.0%}"])
        widths = [max(len(str(r[i])) for r in [head, *body]) for i in range(len(head))]
        lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *body]]
        return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])

    def to_dict(self) -> dict[str, Any]:
        return {"models": [*self.labels, MERGED],
                "tasks": [{"source": r.owner, "task": r.task, "metric": r.metric, "scores": r.scores,
                           "best_source": r.best(self.labels), "merge_keeps": r.kept(self.labels)}
                          for r in self.rows]}


def evaluate_merge(sources: list[Source], merged_dir: Path, out_dir: Path, recorded: Path | None = None) -> Comparison:
    """Run ``evaluate.run`` of each source's config on every source and on the merged model.

    ``recorded``: the merged model's folder as its eval files name it (where it will be, when ``merged_dir`` is
    the folder it is built in)."""
    import json

    from tunesmith import evaluate

    labels = [s.label for s in sources]
    models = {**{s.label: s.folder for s in sources}, MERGED: merged_dir}
    rows: list[TaskRow] = []
    for owner in sources:
        if owner.config is None or not owner.config.eval_tasks:
            continue
        results = {label: evaluate.run(owner.config, model=folder, name=label, out_dir=out_dir / owner.label)
                   for label, folder in models.items()}
        report = out_dir / owner.label / f"eval_{MERGED}.json"
        if recorded is not None and report.is_file():
            data = json.loads(report.read_text("utf-8"))
            report.write_text(json.dumps({**data, "model": str(recorded)}, indent=2), "utf-8")
        for spec in owner.config.eval_tasks:
            main = results[MERGED].tasks[spec.name].score.main
            rows.append(TaskRow(owner.label, spec.name, main,
                                {label: r.tasks[spec.name].score.metrics[main] for label, r in results.items()}))
    return Comparison(labels, rows)
