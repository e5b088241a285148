"""Every command's ``--help`` shows its full description (the command function's docstring), while the
command list of ``tunesmith --help`` shows the one-line summary."""

from __future__ import annotations

import re

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from tunesmith.cli.main import app


def _commands(group=None, path=()):
    group = group or get_command(app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def _words(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("-\n", "-")).strip()


@pytest.mark.parametrize("path,command", list(_commands()), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_help_shows_the_full_description_and_the_list_the_summary(path, command):
    doc = _words(command.callback.__doc__ or "")
    assert doc, f"tunesmith {' '.join(path)} has no description"
    shown = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    first_sentence = doc.split(". ")[0]
    assert first_sentence in _words(shown.output), (first_sentence, shown.output)
    if command.short_help:  # else the listing shows the docstring's start, as --help does
        listing = CliRunner().invoke(app, [*path[:-1], "--help"], terminal_width=200)
        assert _words(command.short_help)[:40] in _words(listing.output)
