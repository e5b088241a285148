"""JSON arrays and CSV files are read as they stream (issue 20): through a buffer of a few characters,
a file gives exactly the rows, errors, lines and columns the whole text gives — on the fuzz corpus's
malformed files and on planted chunk-boundary cases."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from fuzz_rows import write_corpus

from tunesmith.config import DatasetSpec
from tunesmith.data import csv_rows, json_stream, readers


def _rows(rows: Iterator[readers.RawRow]) -> list[tuple[Any, ...]]:
    return [(r.source, r.row, r.line, r.data, r.error, r.field) for r in rows]


def _whole_json(path: Path, spec: DatasetSpec) -> list[tuple[Any, ...]]:
    """What ``read_json`` gave before it streamed: the whole text decoded at once."""
    text = readers._lossless(path.read_bytes())
    start = json_stream.skip_ws(text, 0)
    if start == len(text):
        return []
    array = text[start] == "["
    pieces = json_stream.stream(text, start + 1 if array else start, spec.max_row_bytes, array)
    return [(str(path), p.row, p.line, p.raw if p.problem else p.value, p.problem, p.field) for p in pieces]


_LINE = re.compile(r"[^\n]*\n|[^\n]+$")


def _whole_csv(path: Path, spec: DatasetSpec) -> list[tuple[Any, ...]]:
    """What ``read_csv`` gave before it streamed (the earlier ``csv_rows.records``, kept here as the
    reference): every line of the whole text in a list, re-read from a bad record's second line."""
    lines = _LINE.findall(readers._lossless(path.read_bytes()))
    limit = spec.max_row_bytes
    out: list[csv_rows.CsvRecord] = []
    reader = csv.reader(iter(lines), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        out.append(csv_rows.CsvRecord(1, None, f"invalid CSV header: {exc}"))
        header = None
    start = reader.line_num
    while header is not None and start < len(lines):
        reader = csv.reader(islice(lines, start, None), strict=True)
        while True:
            first = start + reader.line_num
            try:
                values = next(reader)
            except StopIteration:
                start = len(lines)
                break
            except csv.Error as exc:
                out.append(csv_rows.CsvRecord(first + 1, None, csv_rows._csv_problem(exc)))
                start = first + 1
                break
            last = start + reader.line_num - 1
            if not any(v.strip() for v in values):
                continue
            odd = sum(lines[k].count('"') for k in range(first, last + 1)) % 2 == 1
            if (last > first or any("\n" in v for v in values)) and odd:
                out.append(csv_rows.CsvRecord(first + 1, None, "invalid CSV: a quote opened on this line is never "
                                              "closed (only this line was skipped)"))
                start = first + 1
                break
            if len(values) != len(header):
                problem = f"has {len(values)} fields but the header has {len(header)}"
                if last > first:
                    problem += " (an unbalanced quote? only this line was skipped)"
                out.append(csv_rows.CsvRecord(first + 1, values if last == first else None, problem))
                if last > first:
                    start = first + 1
                    break
                continue
            out.append(csv_rows._checked(first + 1, dict(zip(header, values, strict=True)), limit))
    return [(str(path), k, r.line, r.values, r.problem, None) for k, r in enumerate(out, 1)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    write_corpus(folder, seed=1)
    return folder


def _planted(folder: Path) -> list[Path]:
    """Chunk-boundary cases: one-line arrays (columns far past any buffer), numbers cut by a refill,
    multi-byte characters and invalid bytes across reads, a BOM, data after the array, two arrays."""
    rows = [{"instruction": f"Do {k} é中😀", "output": f"Done {k}."} for k in range(40)]
    one_line = json.dumps(rows, ensure_ascii=False)
    cases = {
        "one_line.json": one_line,
        "one_line_bad.json": one_line.replace('"Done 17."', '"Done 17."}{').replace("Do 30", "Do 30\udce9"),
        "numbers.json": "[" + ", ".join(str(10 ** (k % 12) + k) for k in range(60)) + "]",
        "bom.json": "\ufeff" + json.dumps(rows[:5], indent=2),
        "extra.json": json.dumps(rows[:3], indent=2) + "\n" + "x" * 500,
        "two.json": json.dumps(rows[:3]) + "\n" + json.dumps(rows[3:6]),
        "values.json": "\n".join(json.dumps(r) for r in rows[:10]) + "\n{oops\n" + json.dumps(rows[10]),
        "pretty_broken.json": json.dumps(rows[:12], indent=4).replace('"Done 6."', '"Done 6.",,'),
        "cut.json": json.dumps(rows[:8], indent=2)[:-40],
        "one_line.csv": "instruction,output\n" + "".join(f"Do {k} é😀,Done {k}\n" for k in range(30)),
        "quotes.csv": 'instruction,output\n"a\nb",c\n"never closed,x\ny,z\n' + "w,\xe9\n" + "p,q\nr,s,t\nlast,one",
    }
    paths = []
    for name, text in cases.items():
        path = folder / name
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        paths.append(path)
    return paths


@pytest.mark.parametrize("chunk", [3, 64, 1 << 20])
def test_streamed_json_and_csv_equal_the_whole_text(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    chunk: int) -> None:
    monkeypatch.setattr(json_stream, "CHUNK", chunk)
    monkeypatch.setattr(json_stream, "_AHEAD", max(1, chunk // 4))
    files = sorted(corpus.glob("*.json")) + sorted(corpus.glob("*.csv")) + _planted(tmp_path)
    checked = {".json": 0, ".csv": 0}
    for path in files:
        spec = DatasetSpec(path=str(path), max_row_bytes=1 << 16)
        whole = (_whole_json if path.suffix == ".json" else _whole_csv)(path, spec)
        assert _rows(readers.read_file(path, spec)) == whole, path.name
        checked[path.suffix] += any(r[4] for r in whole) and any(r[4] is None for r in whole)
    assert checked[".json"] >= 6 and checked[".csv"] >= 3  # files with good and bad rows, both read


def test_streamed_json_reports_far_columns_and_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted invalid byte in a one-line array, far past the buffer: its exact column."""
    monkeypatch.setattr(json_stream, "CHUNK", 16)
    text = "[" + ", ".join(json.dumps({"instruction": f"q{k}", "output": "a"}) for k in range(50)) + "]"
    at = text.index('"q37"') + 2
    path = tmp_path / "far.json"
    path.write_bytes(text.encode()[:at] + b"\xff" + text.encode()[at:])
    bad = [r for r in readers.read_file(path, DatasetSpec(path=str(path))) if r.error]
    assert [(r.row, r.line) for r in bad] == [(38, 1)]
    assert f"byte 0xff at line 1, column {at + 1})" in bad[0].error
