"""Fuzzed datasets: every bad row located, no good row lost, no traceback anywhere downstream.

The corpus (tests/fuzz_rows.py) has > 1,000 malformed rows over every format (JSONL chat,
pretty-printed JSON arrays, sharegpt, preference, CSV, Parquet, txt, mixed formats, a 10 MB
row), each with the line (or row) where it is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tunesmith.config import DatasetSpec
from tunesmith.data.ingest import collect

from conftest import run_main
from fuzz_rows import Corpus, write_corpus
from tiny import build_tokenizer

_GOOD = re.compile(r"good-\d+")
CHATML = (Path(__file__).resolve().parents[1] / "src/tunesmith/tokenize/templates/chatml.jinja").read_text()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, Corpus]]:
    folder = tmp_path_factory.mktemp("fuzz")
    return folder, write_corpus(folder, seed=0)


def _where(error) -> tuple[str, int | None, int | None]:
    return Path(error.source).name, error.line, None if error.line is not None else error.row


def test_every_bad_row_located_and_no_good_row_lost(corpus) -> None:
    _, corpora = corpus
    total_bad = 0
    for method, part in corpora.items():
        got = collect([DatasetSpec(**s) for s in part.specs], method)
        expected = {(e.file, e.line, e.row) for e in part.expected}
        found = [_where(r.error) for r in got.rejected]
        assert len(found) == len(set(found)), "a defect was reported twice"
        assert set(found) == expected, (sorted(expected - set(found))[:10], sorted(set(found) - expected)[:10])
        kept = [t for r in got.records for t in set(_GOOD.findall(json.dumps(r.to_dict())))]
        assert sorted(kept) == sorted(part.good), "good rows lost or duplicated"
        assert all("bad" not in json.dumps(r.to_dict()) for r in got.records), "a bad row was accepted"
        assert all(r.error.message for r in got.rejected)
        total_bad += len(expected)
    assert total_bad >= 1000


def test_named_reasons_and_field_names(corpus) -> None:
    _, corpora = corpus
    got = collect([DatasetSpec(**s) for s in corpora["sft"].specs], "sft")
    reasons = " | ".join(f"{r.error.field} {r.error.message}" for r in got.rejected)
    for reason in ("nested deeper than 64 levels", "lone surrogate", "twice in one object", "is too large",
                   "is not valid UTF-8", "invalid CSV", "missing ',' between rows", "was it truncated?",
                   "messages[1].content is missing", "conversations[1].value is missing"):
        assert reason in reasons, reason
    assert "messages[1].value" not in reasons


def test_cli_never_shows_a_traceback_on_fuzzed_data(corpus, tmp_path) -> None:
    folder, corpora = corpus
    for spec in (s for part in corpora.values() for s in part.specs):
        args = ["data", "inspect", spec["path"]] + (["--type", spec["type"]] if "type" in spec else [])
        code, _, err = run_main(*args)
        assert code == 1 and err.startswith("error: ") and "internal error" not in err, (spec["path"], err[-500:])
    tok = tmp_path / "tok"
    build_tokenizer(tok, CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>", pad_token="<|endoftext|>")
    config = {"base_model": str(tok), "datasets": corpora["sft"].specs, "on_bad_rows": "skip", "output_dir": str(tmp_path / "run"),
              "sequence_len": 128, "chat_template": "chatml"}
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(config))
    code, out, err = run_main("audit", str(path), "--json", "--fail-on", "never")
    assert code == 0 and "internal error" not in err, err[-2000:]
    assert json.loads(out)["rows"] == len(corpora["sft"].good)
    code, out, err = run_main("preview", str(path), "--json", "--rows", "3")
    assert code == 0 and "internal error" not in err, err[-2000:]
    assert len(out.splitlines()) == 3
