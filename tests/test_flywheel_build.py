"""flywheel build: reviewed failures + positives + replay, dedup, decontamination, manifest, no overwrite."""

from __future__ import annotations

import json

import pytest
from flywheel_helpers import planted_log

from tunesmith.config.schema import DatasetSpec
from tunesmith.errors import TunesmithError
from tunesmith.flywheel import BuildOptions, MineOptions, build, mine
from tunesmith.flywheel.files import sha256


def _chat(path, pairs):
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": a}]})
                            + "\n" for p, a in pairs))
    return path


@pytest.fixture
def setup(tmp_path):
    mine(MineOptions(db=planted_log(tmp_path / "log.sqlite"), out=tmp_path / "mined", cluster_threshold=1.0))
    queue = tmp_path / "mined" / "queue.jsonl"
    verdicts = {"corr": ("correct", "bonjour"), "down": ("correct", "it is sunny"), "unsure": ("accept", None),
                "refuse": ("reject", None)}
    items = [json.loads(line) for line in queue.read_text().splitlines()]
    for item in items:
        verdict, correction = verdicts.get(item["request_ids"][0], (None, None))
        item.update(verdict=verdict, correction=correction)
    queue.write_text("".join(json.dumps(i) + "\n" for i in items) + "{corrupt\n")
    positives = _chat(tmp_path / "positives.jsonl", [("translate hello to french", "bonjour"),  # duplicate
                                                     ("spell cat backwards", "tac"),  # an eval row
                                                     ("add 2 and 3", "5")])
    base = _chat(tmp_path / "base.jsonl", [("name the largest ocean", "pacific"),
                                           ("what is the capital of italy and why", "rome since it is the seat"),
                                           ("count to three", "1 2 3"), ("say hi", "hi")])
    golden = _chat(tmp_path / "golden.jsonl", [("spell cat backwards", "tac"),
                                               ("What is the capital of Italy and why?", "Rome, since it is the seat.")])
    options = BuildOptions(reviewed=queue, out=tmp_path / "data", base_data=(DatasetSpec(path=str(base)),),
                           eval_data=(DatasetSpec(path=str(golden)),), positives=positives, positives_share=1.0,
                           replay_ratio=0.5)
    return options, tmp_path


def test_the_next_training_set_is_assembled_cleaned_and_described(setup):
    options, tmp_path = setup
    result = build(options)
    assert result.counts == {"flywheel:correction": 2, "flywheel:accepted": 1, "flywheel:positive": 1, "replay": 3,
                             "total": 7, "duplicates_removed": 1, "contaminated_removed": 2, "replay_superseded": 0}
    rows = [json.loads(line) for line in result.train_file.read_text().splitlines()]
    pairs = [(r["messages"][0]["content"], r["messages"][1]["content"], r["meta"]["origin"]) for r in rows]
    assert pairs[:3] == [("translate hello to french", "bonjour", "flywheel:correction"),  # queue order (rank)
                         ("rate the weather in oslo", "it is sunny", "flywheel:correction"),
                         ("what is the airspeed of a swallow", "about nine", "flywheel:accepted")]
    assert pairs[3:] == [("add 2 and 3", "5", "flywheel:positive"), ("name the largest ocean", "pacific", "replay"),
                         ("count to three", "1 2 3", "replay"), ("say hi", "hi", "replay")]
    removed = {(r["reason"], r.get("kind"), r["messages"][0]["content"]) for r in result.removed}
    assert removed == {("near_duplicate", None, "translate hello to french"),
                       ("contaminated", "exact", "spell cat backwards"),
                       ("contaminated", "near", "what is the capital of italy and why")}
    assert [json.loads(line)["reason"] for line in (tmp_path / "data" / "removed.jsonl").read_text().splitlines()] \
        == ["near_duplicate", "contaminated", "contaminated"]
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["counts"] == result.counts
    assert manifest["fingerprints"]["train.jsonl"] == sha256(result.train_file)
    assert manifest["from"]["db_sha256"] == sha256(tmp_path / "log.sqlite")
    assert manifest["review_errors"] == [f"{options.reviewed}:7: not valid JSON "
                                         "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"]
    assert json.loads((tmp_path / "data" / "audit.json").read_text())["rows"] == 7


def test_an_existing_dataset_is_never_replaced_without_overwrite(setup):
    options, tmp_path = setup
    build(options)
    before = (tmp_path / "data" / "train.jsonl").read_text()
    with pytest.raises(TunesmithError, match="train.jsonl: a built dataset already exists; pass --overwrite"):
        build(options)
    assert (tmp_path / "data" / "train.jsonl").read_text() == before
    from dataclasses import replace

    again = build(replace(options, overwrite=True, replay_ratio=0.0, base_data=()))
    assert again.counts["replay"] == 0 and again.counts["total"] == 4


def test_replay_needs_base_data_and_an_empty_set_is_refused(setup, tmp_path):
    options, _ = setup
    from dataclasses import replace

    with pytest.raises(TunesmithError, match="replay share needs the original training data"):
        build(replace(options, base_data=()))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(TunesmithError, match="the built dataset is empty: no reviewed item has a verdict"):
        build(replace(options, reviewed=empty, positives=None, replay_ratio=0.0, base_data=(), out=tmp_path / "e"))
    # every row a copy of an eval row: said so (it used to blame the review verdicts)
    from tunesmith.flywheel.queue import item_id

    (tmp_path / "leak").mkdir()
    leak = tmp_path / "leak" / "reviewed.jsonl"
    leak.write_text(json.dumps({"id": item_id(["r1"]), "request_ids": ["r1"], "verdict": "correct", "correction": "tac",
                                "messages": [{"role": "user", "content": "spell cat backwards"}]}) + "\n")
    with pytest.raises(TunesmithError, match=r"empty: all 1 rows copy an eval row \(first: 'spell cat backwards', "
                                             r"like .*golden.jsonl:1\)"):
        build(replace(options, reviewed=leak, positives=None, replay_ratio=0.0, base_data=(), out=tmp_path / "f"))


def _task_file(path, task, n, weight=None):
    """n chat rows of one task, each told apart by number (no two near duplicates of each other or the golden)."""
    rows = [{"messages": [{"role": "user", "content": f"{task} request {i}: {' '.join(f'w{task}{i}x{k}' for k in range(6))}"},
                          {"role": "assistant", "content": f"{task} answer {i}",
                           **({"loss_weight": weight} if weight is not None else {})}]} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _replayed(result):
    rows = [json.loads(line) for line in result.train_file.read_text().splitlines()]
    return [r for r in rows if r["meta"]["origin"] == "replay"]


@pytest.mark.parametrize("seed", range(5))
def test_replay_keeps_every_task_of_the_original_training_set_at_its_share(setup, seed):
    """Planted: a small task (10 rows) beside a large one (90). 5 new rows (no eval set: none is left out), replay
    ratio 0.8 -> 20 replay rows:
    exactly 2 planning + 18 tickets for every seed (a random sample of the union gave 0, 1, 2, 3 and 2 planning
    rows for these seeds)."""
    from dataclasses import replace

    options, tmp_path = setup
    small = DatasetSpec(path=str(_task_file(tmp_path / "planning.jsonl", "planning", 10, weight=0.5)))
    large = DatasetSpec(path=str(_task_file(tmp_path / "tickets.jsonl", "tickets", 90)))
    result = build(replace(options, base_data=(small, large), replay_ratio=0.8, seed=seed, overwrite=True, eval_data=()))
    replayed = _replayed(result)
    tasks = [r["messages"][0]["content"].split()[0] for r in replayed]
    assert (len(replayed), tasks.count("planning"), tasks.count("tickets")) == (20, 2, 18)
    assert result.manifest["replay_per_dataset"] == {small.path: 2, large.path: 18}
    # the replayed rows keep their own per-message loss weight
    assert {r["messages"][1].get("loss_weight") for r in replayed if r["messages"][0]["content"].startswith("planning")} \
        == {0.5}
    assert all("loss_weight" not in r["messages"][1] for r in replayed if r["messages"][0]["content"].startswith("tickets"))


def test_replay_shares_follow_the_original_mix_and_never_exceed_a_dataset(setup):
    """planning weight 19: the original run used 190 : 90 -> 13.6 of 20 replay rows, but it has 10; the rest go
    to tickets (10 + 10). With mix_temperature 1e9 (equal shares): 10 + 10 as well; with weight 1: 2 + 18."""
    from dataclasses import replace

    options, tmp_path = setup
    options = replace(options, eval_data=())  # 5 new rows, none left out: 20 replay rows
    small = DatasetSpec(path=str(_task_file(tmp_path / "planning.jsonl", "planning", 10)), weight=19)
    large = DatasetSpec(path=str(_task_file(tmp_path / "tickets.jsonl", "tickets", 90)))
    result = build(replace(options, base_data=(small, large), replay_ratio=0.8, overwrite=True))
    assert list(result.manifest["replay_per_dataset"].values()) == [10, 10]
    small = small.model_copy(update={"weight": None})
    result = build(replace(options, base_data=(small, large), replay_ratio=0.8, overwrite=True, mix_temperature=1e9))
    assert list(result.manifest["replay_per_dataset"].values()) == [10, 10]
    result = build(replace(options, base_data=(small, large), replay_ratio=0.8, overwrite=True))
    assert list(result.manifest["replay_per_dataset"].values()) == [2, 18]


def test_replay_never_brings_back_what_a_new_row_corrects_or_an_eval_row(setup):
    """The original data answered two mined prompts differently (one word for word, one reworded) and holds an eval
    row: none is replayed (a reviewed answer must not meet the old one it corrects), each is listed in removed.jsonl
    with why, and the replay share still holds: 4 new rows at ratio 0.5 -> 4 replay rows, from the rows left."""
    from dataclasses import replace

    options, tmp_path = setup
    base = _chat(tmp_path / "base2.jsonl", [("translate hello to french", "salut"),  # the corrected prompt
                                            ("Rate the weather in Oslo!", "it rains"),  # the same, reworded
                                            ("spell cat backwards", "tac"),  # an eval row
                                            *[(f"count to {n} slowly please", " ".join(map(str, range(n))))
                                              for n in range(4, 9)]])
    result = build(replace(options, base_data=(DatasetSpec(path=str(base)),), overwrite=True))
    replayed = [r["messages"][0]["content"] for r in _replayed(result)]
    assert len(replayed) == 4 and all(p.startswith("count to") for p in replayed)
    assert (result.counts["replay"], result.counts["replay_superseded"], result.counts["total"]) == (4, 2, 8)
    left = {r["messages"][0]["content"]: r for r in result.removed if r["meta"].get("origin") == "replay"}
    assert {p: r["reason"] for p, r in left.items()} == {"translate hello to french": "superseded",
                                                         "Rate the weather in Oslo!": "superseded",
                                                         "spell cat backwards": "contaminated"}
    assert left["translate hello to french"]["kept"]["origin"] == "flywheel:correction"
    assert left["Rate the weather in Oslo!"]["kept"]["request_ids"] == ["down"]
    written = [json.loads(line) for line in (tmp_path / "data" / "removed.jsonl").read_text().splitlines()]
    assert sum(r["reason"] == "superseded" for r in written) == 2


def test_openai_shaped_requests_become_rows_as_training_reads_them(tmp_path):
    """A developer turn with text parts, a request's own system prompt, a tool-call conversation: mined, reviewed
    and built without a crash, each row keeping the system prompt it was answered under and the tool call it made;
    the audit sees the tool call (no 'empty assistant output')."""
    from flywheel_helpers import feedback, request, write_log

    from tunesmith.flywheel import import_queue

    def chat(rid, messages, reply, **extra):
        return {**request(rid, "unused", reply, **extra), "messages": json.dumps(messages)}

    call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    rows = [chat("dev", [{"role": "developer", "content": [{"type": "text", "text": "Reply in French."}]},
                         {"role": "user", "content": [{"type": "text", "text": "say thanks"}]}], "thanks"),
            chat("tool", [{"role": "user", "content": "weather in oslo"},
                          {"role": "assistant", "content": None, "tool_calls": [call]},
                          {"role": "tool", "tool_call_id": "c1", "content": "rain, 8C"}], "It rains in Oslo, 8C.")]
    db = write_log(tmp_path / "log.sqlite", rows, [feedback("dev", "down", 0.0, correction="merci"),
                                                   feedback("tool", "up", 1.0)])
    mined = mine(MineOptions(db=db, out=tmp_path / "mined"))
    assert mined.items[0]["messages"] == [{"role": "system", "content": "Reply in French."},
                                          {"role": "user", "content": "say thanks"}]
    queue_file = tmp_path / "mined" / "queue.jsonl"
    items = [json.loads(line) for line in queue_file.read_text().splitlines()]
    items[0].update(verdict="correct", correction="merci")
    queue_file.write_text("".join(json.dumps(i) + "\n" for i in items))
    imported = import_queue(queue_file)
    assert imported.errors == [] and imported.verdicts["correct"] == 1
    result = build(BuildOptions(reviewed=tmp_path / "mined" / "reviewed.jsonl", out=tmp_path / "data",
                                positives_share=1.0, replay_ratio=0.0))
    built = [json.loads(line)["messages"] for line in result.train_file.read_text().splitlines()]
    assert built[0] == [{"role": "system", "content": "Reply in French."}, {"role": "user", "content": "say thanks"},
                        {"role": "assistant", "content": "merci"}]
    assert built[1][1]["tool_calls"] == [{"type": "function", "function": {"name": "weather", "arguments": {"city": "Oslo"}}}]
    assert built[1][-1] == {"role": "assistant", "content": "It rains in Oslo, 8C."}
    assert "empty_response" not in {f["check"] for f in result.audit["findings"]}
