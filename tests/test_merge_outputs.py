"""merge/outputs.Replacing: a merge or export folder is replaced only by a result that passed its check."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith.merge.outputs import Replacing


def _previous(tmp_path: Path) -> Path:
    out = tmp_path / "merged"
    out.mkdir()
    (out / "model.txt").write_text("the earlier result")
    return out


def test_a_passing_result_replaces_the_previous_folder(tmp_path: Path) -> None:
    out = _previous(tmp_path)
    with Replacing(out) as replacing:
        (out / "model.txt").write_text("new")
        assert replacing.finish(True) == out
    assert (out / "model.txt").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


def test_a_failing_result_goes_to_failed_and_the_previous_comes_back(tmp_path: Path) -> None:
    out = _previous(tmp_path)
    with Replacing(out) as replacing:
        (out / "model.txt").write_text("broken")
        assert replacing.finish(False) == tmp_path / "merged.failed"
    assert (out / "model.txt").read_text() == "the earlier result"
    assert (tmp_path / "merged.failed" / "model.txt").read_text() == "broken"


def test_an_error_while_writing_deletes_the_half_result_and_gives_the_previous_back(tmp_path: Path) -> None:
    out = _previous(tmp_path)
    with pytest.raises(RuntimeError), Replacing(out):
        (out / "half.bin").write_text("x")
        raise RuntimeError("killed halfway")
    assert sorted(p.name for p in out.iterdir()) == ["model.txt"] and (out / "model.txt").read_text() == \
        "the earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]
    with pytest.raises(RuntimeError), Replacing(tmp_path / "fresh"):  # nothing there before: nothing left
        raise RuntimeError("killed")
    assert not (tmp_path / "fresh").exists()
