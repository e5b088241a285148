"""``tunesmith audit CONFIG | DATA... [--json] [--html FILE] [--fail-on error|warning|never]``."""

from __future__ import annotations

from pathlib import Path

import typer

_CONFIG_SUFFIXES = (".yaml", ".yml")


def audit(
    paths: list[str] = typer.Argument(..., help="A YAML run config, or data files/folders to audit."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: rows, findings, stats."),
    html: Path | None = typer.Option(None, "--html", help="Also write the report as an HTML page to FILE."),
    fail_on: str | None = typer.Option(
        None, "--fail-on", help="Exit 1 on findings of this severity or worse: error, warning or never "
        "(default: audit.fail_on of the config, else error)."
    ),
    model: str | None = typer.Option(None, "--model", help="DATA mode: tokenizer for the token checks."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key: key=value (dotted for nested)."),
) -> None:
    """Check datasets for the mistakes that silently ruin a fine-tune, before any GPU time is spent."""
    import json

    from tunesmith.config import config_from_dict, load_config
    from tunesmith.audit import run
    from tunesmith.errors import ConfigError

    if fail_on not in (None, "error", "warning", "never"):
        raise ConfigError(f"--fail-on: must be one of error, warning, never (got {fail_on!r})")
    if len(paths) == 1 and paths[0].endswith(_CONFIG_SUFFIXES):
        from tunesmith.train.context import fit_default_length

        # the sequence_len train will use, so length findings are train's (see preview)
        config = fit_default_length(load_config(paths[0], set_), lambda line: typer.echo(line, err=True))
        report = run(config)
    else:
        # files, not a run: audited as given, without the default validation split (--set val_set_size=...)
        raw = {"base_model": model or "(none)", "datasets": [{"path": p} for p in paths], "val_set_size": 0}
        config = config_from_dict(raw, set_, source="<command line>")
        report = run(config, tokenize=model is not None)
    if html is not None:
        from tunesmith.audit.render import to_html

        try:
            html.write_text(to_html(report), "utf-8")
        except OSError as exc:
            raise ConfigError(f"--html: cannot write {html}: {exc.strerror or exc}") from None
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str))
    else:
        from rich.console import Console

        from tunesmith.audit.render import print_report

        print_report(report, Console(highlight=False, soft_wrap=False))
    if report.fails(fail_on or config.audit.fail_on):  # type: ignore[arg-type]
        raise typer.Exit(1)
