"""The Go text/template subset renderer (for Modelfile TEMPLATE parity) follows Go's semantics."""

from __future__ import annotations

import pytest

from tunesmith.export.gotemplate import GoTemplateError, render

MSGS = [{"Role": "user", "Content": "hi"}, {"Role": "assistant", "Content": "yo"}, {"Role": "user", "Content": "ok"}]


def test_trim_markers_remove_all_adjacent_whitespace_like_go():
    assert render("a  \n {{- .X -}} \n\t b", {"X": "x"}) == "axb"
    assert render("a {{ .X }} b", {"X": "x"}) == "a x b"


def test_if_else_if_else_and_comparisons():
    tpl = '{{ if eq .R "a" "b" }}AB{{ else if ne .R "c" }}notC{{ else }}C{{ end }}'
    assert [render(tpl, {"R": r}) for r in ("b", "d", "c")] == ["AB", "notC", "C"]
    assert render("{{ if and .A (not .B) }}y{{ else }}n{{ end }}", {"A": "x", "B": ""}) == "y"
    assert render("{{ if or .A .B }}y{{ else }}n{{ end }}", {"A": "", "B": []}) == "n"  # empty = false


def test_range_with_index_variables_dollar_root_and_last_detection():
    tpl = ("{{- range $i, $m := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}"
           "{{ $i }}:{{ .Role }}={{ $m.Content }}{{ if $last }}!{{ else }},{{ end }}{{ end }}")
    assert render(tpl, {"Messages": MSGS}) == "0:user=hi,1:assistant=yo,2:user=ok!"
    assert render("{{ range .Messages }}x{{ else }}none{{ end }}", {"Messages": []}) == "none"


def test_assignment_inside_range_updates_the_outer_variable():
    tpl = ("{{ $first := true }}{{ range .Messages }}{{ if $first }}[{{ .Content }}]{{ end }}"
           "{{ $first = false }}{{ end }}")
    assert render(tpl, {"Messages": MSGS}) == "[hi]"


def test_string_escapes_and_missing_fields():
    assert render('{{ "a\\nb" }}|{{ .Nope }}', {}) == "a\nb|<no value>"


@pytest.mark.parametrize("tpl,match", [
    ("{{ .X | json }}", "pipelines are not supported"),
    ("{{ if .X }}open", "without"),
    ("{{ end }}", "unexpected"),
    ("{{ $undefined }}", "undefined variable"),
    ("{{ template \"x\" }}", "unsupported"),
    ("{{ upper .X }}", "unknown function"),
])
def test_unsupported_or_malformed_templates_fail_loudly(tpl, match):
    with pytest.raises(GoTemplateError, match=match):
        render(tpl, {"X": "x"})
