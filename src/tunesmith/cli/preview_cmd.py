"""``tunesmith preview CONFIG [--rows N] [--json] [--set k=v]``."""

from __future__ import annotations

from typing import Any

import typer


def preview(
    path: str = typer.Argument(..., help="YAML config file."),
    rows: int = typer.Option(5, "--rows", min=0, help="How many rows to show."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per row (stable interface)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: key=value (dotted for nested)."),
) -> None:
    """Tokenize the data as training will and show each row with its trained tokens highlighted."""
    import json

    from rich.console import Console
    from rich.text import Text

    from tunesmith.config import load_config
    from tunesmith.tokenize import run
    from tunesmith.tokenize.chat import IGNORE
    from tunesmith.tokenize.preview import as_sequence, row_view, segments

    from tunesmith.train.context import fit_default_length

    # the sequence_len train will use (an unset default longer than the model's context is lowered): preview shows
    # what train trains
    result = run(fit_default_length(load_config(path, set_), lambda line: typer.echo(line, err=True)))
    picked = list(enumerate(zip(result.samples[:rows], result.sources)))
    cache_line = f"cache: {'reused' if result.cache_hit else 'built'} {result.cache_dir}"
    if as_json:
        for i, (row, source) in picked:
            typer.echo(json.dumps(row_view(i, row, source, result.tokenizer), ensure_ascii=False))
        Console(stderr=True, highlight=False, soft_wrap=True).print(cache_line, markup=False)
        return
    out = Console(highlight=False, soft_wrap=True)
    for i, (row, source) in picked:
        pieces = segments(row, result.tokenizer)
        ids, labels = as_sequence(row)
        trained = sum(1 for x in labels if x != IGNORE)
        out.rule(Text(f"row {i} · {source} · {len(ids)} tokens, {trained} trained"), style="dim")
        out.print(Text.assemble(*((text, "bold black on green" if on else "dim") for text, on in pieces)))
    out.rule(Text("summary"), style="dim")
    for line in summary_lines(result.stats) + [cache_line]:
        out.print(line, markup=False)


def summary_lines(stats: dict[str, Any]) -> list[str]:
    """The human summary: rows, tokens, trained share, truncation, drops, efficiency."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    lines = [
        f"rows: {stats['rows']} train, {stats['eval_rows']} eval",
        f"tokens: {stats['tokens']}, trained: {stats['trained_tokens']} ({pct(stats['trained_share'])})",
        f"truncated: {stats['truncated_rows']} rows ({stats['truncated_tokens']} tokens removed)",
        f"dropped: {stats['dropped_rows']} rows" + (f" {stats['dropped']}" if stats["dropped"] else ""),
        f"EOS appended (template closes turns without an end-of-turn token): {stats['appended_eos_rows']} rows",
        f"packing efficiency: {pct(stats['packing_efficiency'])}"
        f" (sample_packing: {str(stats['sample_packing']).lower()})",
        f"padded efficiency without packing: {pct(stats['padded_efficiency'])}",
    ]
    lines += [f"  dropped {example}" for example in stats["drop_examples"]]
    return lines
