"""``tunesmith data inspect PATH``."""

from __future__ import annotations

from typing import Any

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None)
_SHOWN_CHARS = 300


@app.command("inspect")
def inspect(
    path: str = typer.Argument(..., help="File, folder, save_to_disk folder or hub dataset id."),
    type_: str = typer.Option("auto", "--type", help="Force the format (chat, alpaca, sharegpt, ...)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Detect the format, count rows, summarise roles/lengths, show 3 normalised examples."""
    import json
    from typing import get_args

    from tunesmith.errors import did_you_mean
    from tunesmith.config.schema import DataType
    from tunesmith.data.summary import inspect_path
    from tunesmith.errors import ConfigError

    types = list(get_args(DataType))
    if type_ not in types:
        raise ConfigError(f"--type: must be one of {', '.join(types)} (got '{type_}'){did_you_mean(type_, types)}")
    summary = inspect_path(path, type_)
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
    else:
        _render(summary)


def _render(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from tunesmith.errors import location

    console = Console(highlight=False)
    kinds = ", ".join(f"{k} {n}" for k, n in summary["kind_counts"].items())
    head = Table.grid(padding=(0, 2))
    rows = f"{summary['rows']} ({kinds})"
    for name, value in (("path", summary["path"]), ("format", summary["format"]), ("rows", rows)):
        head.add_row(Text(name, style="bold"), Text(str(value)))
    console.print(head)
    roles = Table(title="turns per role (length in characters)", title_justify="left")
    for column in ("role", "turns", "min", "p50", "max"):
        roles.add_column(column, justify="left" if column == "role" else "right")
    for role, count in summary["roles"].items():
        spread = summary["lengths"][role]
        roles.add_row(role, str(count), str(spread["min"]), str(spread["p50"]), str(spread["max"]))
    console.print(roles)
    for i, example in enumerate(summary["examples"], 1):
        where = example["source"]
        loc = location(where["file"], where["row"], where["line"])
        console.print(Text(f"\nexample {i}  ({example['kind']}, {loc})", style="bold"))
        for line in _example_lines(example):
            console.print(Text(line))


def _example_lines(example: dict[str, Any]) -> list[str]:
    """Readable lines of one normalised record, long texts cut."""
    def cut(text: str) -> str:
        flat = text.replace("\n", "\\n")
        return flat if len(flat) <= _SHOWN_CHARS else flat[:_SHOWN_CHARS] + " ..."

    if "text" in example:
        return [f"  text: {cut(example['text'])}"]
    lines = []
    for side in ("messages", "chosen", "rejected"):
        if side != "messages" and side in example:
            lines.append(f"  -- {side}:")
        for m in example.get(side, []):
            calls = "".join(f" [call {c['function']['name']}]" for c in m.get("tool_calls", []))
            weight = f" (weight {m['weight']:g})" if "weight" in m else ""
            if m.get("reasoning_content"):
                lines.append(f"  {m['role']} reasoning: {cut(m['reasoning_content'])}")
            lines.append(f"  {m['role']}{weight}: {cut(m['content'])}{calls}")
    if "label" in example:
        lines.append(f"  label: {example['label']}")
    return lines
