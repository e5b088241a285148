"""``tunesmith flywheel mine|review|build|run``: the sub-app; each command lives in its own module."""

from __future__ import annotations

import typer

from tunesmith.cli import flywheel_build_cmd, flywheel_mine_cmd, flywheel_review_cmd, flywheel_run_cmd

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None)
app.command("mine", short_help="Mine the serving log for failures: signals, clusters, a ranked review queue.")(
    flywheel_mine_cmd.mine)
app.command("review", short_help="Review a mined queue in the terminal, or import an edited queue (JSONL/CSV).")(
    flywheel_review_cmd.review)
app.command("build", short_help="The next training set: reviewed failures + positives + replay, deduplicated, "
            "decontaminated, audited, with a manifest.")(flywheel_build_cmd.build)
app.command("run", short_help="One iteration from FLYWHEEL.yaml: mine, build, train, evaluate, gate; lineage.json.")(
    flywheel_run_cmd.run)
