"""flywheel review: the queue read back with file:line errors, CSV round trip, the walk-through."""

from __future__ import annotations

import csv
import json

import pytest
from flywheel_helpers import planted_log

from tunesmith.errors import TunesmithError
from tunesmith.flywheel import Answer, MineOptions, import_queue, mine, walk
from tunesmith.flywheel import queue as q


@pytest.fixture
def mined(tmp_path):
    mine(MineOptions(db=planted_log(tmp_path / "log.sqlite"), out=tmp_path / "mined", cluster_threshold=1.0))
    return tmp_path / "mined"


def _items(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_malformed_edits_are_rejected_by_line_and_the_rest_is_kept(mined):
    path = mined / "queue.jsonl"
    items = _items(path)
    assert len(items) == 6
    items[0].update(verdict="correct", correction="fixed answer")
    items[1].update(verdict="accept")
    items[2]["id"] = "fw-000000000000"  # edited id
    items[3].update(verdict="maybe")
    items[4].update(verdict="correct", correction="  ")
    lines = [json.dumps(i) for i in items]
    lines.insert(5, '{"id": "fw-broken", ')  # a corrupt line: becomes line 6
    path.write_text("\n".join(lines) + "\n")
    result = import_queue(path)
    assert [str(e) for e in result.errors] == [
        f"{path}:3: id 'fw-000000000000' does not match its request_ids (an edited id or request_ids?)",
        f"{path}:4: verdict 'maybe' is not a verdict (accept, correct, reject, skip, or empty)",
        f"{path}:5: correction verdict 'correct' needs the corrected answer",
        f"{path}:6: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 21 (char 20))",
    ]
    kept = _items(result.out)
    assert [i["id"] for i in kept] == [items[0]["id"], items[1]["id"], items[5]["id"]]
    assert result.verdicts == {"accept": 1, "correct": 1, "reject": 0, "skip": 0, "unreviewed": 1}


def test_ids_must_belong_to_the_mined_queue_and_appear_once(mined):
    path = mined / "queue.jsonl"
    items = _items(path)
    forged = {**items[0], "request_ids": ["down", "corr"]}
    forged["id"] = q.item_id(forged["request_ids"])  # consistent, but not what was mined
    path.write_text("".join(json.dumps(i) + "\n" for i in [items[0], items[0], forged]))
    errors = [str(e) for e in import_queue(path).errors]
    assert errors == [f"{path}:2: id {items[0]['id']!r} already on line 1",
                      f"{path}:3: id {forged['id']!r} is not an item of the mined queue (mine.json)"]


def test_a_csv_queue_edited_in_a_spreadsheet_imports(mined):
    path = mined / "queue.csv"
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and rows[0]["verdict"] == ""
    rows[0]["correction"] = "a fix, with a comma\nand a new line"  # correction alone means 'correct'
    rows[1]["verdict"] = "reject"
    rows[2]["messages"] = "[not json"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, q.CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    result = import_queue(path)
    assert [str(e) for e in result.errors] == [
        f"{path}:5: messages not valid JSON (Expecting value: line 1 column 2 (char 1))"]  # row 3 after a 2-line row
    kept = _items(result.out)
    assert kept[0]["verdict"] == "correct" and kept[0]["correction"] == "a fix, with a comma\nand a new line"
    assert kept[1]["verdict"] == "reject" and len(kept) == 5


def test_the_walk_through_saves_after_every_answer(mined):
    path = mined / "queue.jsonl"
    script = iter([Answer("correct", "bonjour"), Answer("accept"), Answer("skip"), Answer("quit")])
    seen = []

    def answer(item):
        seen.append(item["rank"])
        if len(seen) == 2:  # the first answer is already on disk when the second item is shown
            assert _items(path)[0]["verdict"] == "correct"
        return next(script)

    result = walk(path, answer)
    assert seen == [1, 2, 3, 4] and result.answered["correct"] == 1 and result.remaining == 4
    items = _items(path)
    assert [(i["verdict"], i["correction"]) for i in items[:3]] == [("correct", "bonjour"), ("accept", None),
                                                                     ("skip", None)]
    with pytest.raises(TunesmithError, match="needs the corrected answer"):
        walk(path, lambda item: Answer("correct", ""))
    second = walk(path, lambda item: Answer("reject"))  # skipped and unreviewed items come back
    assert second.answered["reject"] == 4 and second.remaining == 0
    path.write_text(path.read_text() + "{oops\n")
    with pytest.raises(TunesmithError, match=r"queue.jsonl:7: not valid JSON"):
        walk(path, lambda item: Answer("quit"))


def test_the_terminal_walk_through_reads_answers_from_the_keyboard(mined):
    import os
    import subprocess

    from conftest import TUNESMITH

    path = mined / "queue.jsonl"
    keys = "c\nbonjour\nx\na\nq\n"  # correct item 1, an unknown key is asked again, accept item 2, quit
    done = subprocess.run([TUNESMITH, "flywheel", "review", str(path)], input=keys, capture_output=True, text=True,
                          env={**os.environ, "NO_COLOR": "1"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "#1  1 request(s)" in done.stdout and "[user's correction] bonjour" in done.stdout
    assert "accept 1, correct 1, reject 0, skip 0; 4 left to review" in done.stdout
    items = _items(path)
    assert [(i["verdict"], i["correction"]) for i in items[:2]] == [("correct", "bonjour"), ("accept", None)]
