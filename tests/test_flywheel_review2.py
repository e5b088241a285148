"""flywheel: defects found by an adversarial review, each on real files and a real SQLite log."""

from __future__ import annotations

import json

import pytest
from flywheel_helpers import feedback, planted_log, request, write_log

from conftest import run_main
from tunesmith.config.schema import DatasetSpec
from tunesmith.errors import TunesmithError
from tunesmith.flywheel import BuildOptions, MineOptions, build, import_queue, mine


@pytest.fixture
def mined(tmp_path):
    mine(MineOptions(db=planted_log(tmp_path / "log.sqlite"), out=tmp_path / "mined", cluster_threshold=1.0))
    return tmp_path / "mined"


def _items(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path, items):
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items))


def test_a_verdict_or_accepted_reply_that_is_not_text_is_a_line_error(mined):
    """A hand edit writing ``"verdict": 1`` (or an accepted reply as a number) is the reviewer's mistake: a line
    error, not an internal error in import (or later in build)."""
    path = mined / "queue.jsonl"
    items = _items(path)
    items[0]["verdict"] = 1
    items[1].update(verdict="accept", reply=5)
    items[2].update(verdict="correct", correction="fixed")
    _write(path, items)
    result = import_queue(path)
    assert [str(e) for e in result.errors] == [
        f"{path}:1: verdict 1 is not a verdict (accept, correct, reject, skip, or empty)",
        f"{path}:2: reply verdict 'accept' needs the model's reply, which is not text (int)"]
    assert [i["id"] for i in _items(result.out)] == [i["id"] for i in items[2:]]


@pytest.mark.parametrize("name", ["queue.csv", "queue.jsonl"])
def test_a_queue_saved_with_a_byte_order_mark_imports(mined, name):
    """Excel's "CSV UTF-8" (and Notepad) start the file with a BOM; read as plain UTF-8 it renamed the CSV's id
    column, so every row failed, or made the first JSONL line invalid JSON."""
    path = mined / name
    path.write_text(path.read_text("utf-8"), "utf-8-sig")
    result = import_queue(path)
    assert result.errors == [] and result.items == 6


def test_import_out_may_name_a_folder(mined, tmp_path):
    (tmp_path / "reviews").mkdir()
    code, out, err = run_main("flywheel", "review", str(mined / "queue.jsonl"), "--import", "--out",
                              str(tmp_path / "reviews"))
    assert code == 0, err
    assert len(_items(tmp_path / "reviews" / "reviewed.jsonl")) == 6


def test_importing_a_file_over_itself_never_deletes_the_lines_to_fix(mined):
    """Re-importing reviewed.jsonl after editing it wrote only the valid items over it: the line with the typo,
    the one the reviewer was told to fix, was gone."""
    import_queue(mined / "queue.jsonl")
    path = mined / "reviewed.jsonl"
    items = _items(path)
    items[0]["verdict"] = "acept"
    _write(path, items)
    before = path.read_text()
    with pytest.raises(TunesmithError, match=r"reviewed\.jsonl:1: verdict 'acept' is not a verdict"):
        import_queue(path)
    assert path.read_text() == before
    items[0]["verdict"] = "reject"
    _write(path, items)
    assert import_queue(path).verdicts["reject"] == 1  # a clean file may be re-imported in place


def _reviewed(mined):
    items = _items(mined / "queue.jsonl")
    for item in items:
        item.update(verdict="correct", correction=f"fixed {item['id']}")
    _write(mined / "queue.jsonl", items)
    return mined / "queue.jsonl"


def test_a_named_positives_file_must_exist_and_its_rows_be_chat_rows(mined, tmp_path):
    reviewed = _reviewed(mined)
    options = BuildOptions(reviewed=reviewed, out=tmp_path / "data", replay_ratio=0.0, positives_share=1.0,
                           positives=tmp_path / "typo.jsonl")
    with pytest.raises(TunesmithError, match=r"typo\.jsonl: no such positives file"):
        build(options)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": ["hello", "world"]}) + "\n")
    with pytest.raises(TunesmithError, match=r"bad\.jsonl:1: messages\[0\] must be an object"):
        build(BuildOptions(reviewed=reviewed, out=tmp_path / "data", replay_ratio=0.0, positives_share=1.0,
                           positives=bad))
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(TunesmithError, match=r"bad\.jsonl:1: messages: a positive row ends with the assistant"):
        build(BuildOptions(reviewed=reviewed, out=tmp_path / "data", replay_ratio=0.0, positives_share=1.0,
                           positives=bad))


def test_an_output_folder_that_is_a_file_is_named(mined, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    with pytest.raises(TunesmithError, match=r"taken: the output folder is a file"):
        mine(MineOptions(db=tmp_path / "log.sqlite", out=taken))
    with pytest.raises(TunesmithError, match=r"taken: the output folder is a file"):
        build(BuildOptions(reviewed=_reviewed(mined), out=taken, replay_ratio=0.0))


def test_positives_never_hold_a_failing_reply_when_only_some_signals_are_queued(tmp_path):
    """``--signal thumbs_down`` chooses what to review; a confident refusal or broken JSON is still no positive."""
    rows = [request("refuse", "write a haiku about tea", "I'm sorry, but I can't do that.", logprob=-0.1),
            request("badjson", "paris as json", '{"city": ', logprob=-0.1, created=1001.0,
                    params={"response_format": {"type": "json_object"}}),
            request("good", "spell cat backwards", "tac", logprob=-0.1, created=1002.0)]
    db = write_log(tmp_path / "log.sqlite", rows)
    result = mine(MineOptions(db=db, out=tmp_path / "mined", kinds=("thumbs_down",)))
    assert result.positives == 1
    assert [p["meta"]["request_id"] for p in _items(tmp_path / "mined" / "positives.jsonl")] == ["good"]


def test_the_judge_signal_without_a_judge_is_refused(tmp_path):
    """Asking for judge_score without --judge-url flagged nothing and said so nowhere."""
    db = planted_log(tmp_path / "log.sqlite")
    with pytest.raises(TunesmithError, match=r"judge_score needs a judge \(--judge-url and --judge-model\)"):
        mine(MineOptions(db=db, out=tmp_path / "mined", kinds=("judge_score",)))
    assert not (tmp_path / "mined").exists()


WEATHER = {"type": "function", "function": {"name": "weather", "description": "the weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def test_tool_definitions_travel_to_every_training_row(tmp_path):
    """The served prompt showed the request's tools; a training row without them teaches calling a function the
    prompt never defined. Positives, reviewed corrections and replayed rows keep their tools."""
    call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    used = {**request("used", "u", "It rains in Oslo.", params={"tools": [WEATHER]}),
            "messages": json.dumps([{"role": "user", "content": "weather in oslo"},
                                    {"role": "assistant", "content": None, "tool_calls": [call]},
                                    {"role": "tool", "tool_call_id": "c1", "content": "rain"}])}
    wrong = request("wrong", "weather in rome", "It is sunny.", params={"tools": [WEATHER]}, created=1001.0)
    hidden = request("hidden", "weather in lima", "Cloudy.", params={"tools": [WEATHER], "tool_choice": "none"},
                     created=1002.0)
    db = write_log(tmp_path / "log.sqlite", [used, wrong, hidden],
                   [feedback("used", "up", 1.0), feedback("wrong", "down", 0.0), feedback("hidden", "down", 0.0)])
    mine(MineOptions(db=db, out=tmp_path / "mined", cluster_threshold=1.0))
    queue_file = tmp_path / "mined" / "queue.jsonl"
    items = _items(queue_file)
    for item in items:
        item.update(verdict="correct", correction="Let me look that up.")
    _write(queue_file, items)
    base = tmp_path / "base.jsonl"
    base.write_text(json.dumps({"messages": [{"role": "user", "content": "weather in paris"},
                                             {"role": "assistant", "content": "", "tool_calls": [call]}],
                                "tools": [WEATHER]}) + "\n")
    result = build(BuildOptions(reviewed=queue_file, out=tmp_path / "data", base_data=(DatasetSpec(path=str(base)),),
                                positives_share=1.0, replay_ratio=0.2))
    rows = {(r["meta"]["origin"], r["messages"][0]["content"]): r.get("tools") for r in _items(result.train_file)}
    assert rows == {("flywheel:correction", "weather in rome"): [WEATHER],
                    ("flywheel:correction", "weather in lima"): None,  # tool_choice 'none': the prompt showed none
                    ("flywheel:positive", "weather in oslo"): [WEATHER], ("replay", "weather in paris"): [WEATHER]}


def test_a_rerun_with_overwrite_never_mines_over_a_queue_being_reviewed(tmp_path):
    """``flywheel run --overwrite`` replaces the dataset, run and lineage (its help); it re-mined too, wiping the
    verdicts the walk-through had saved in the queue."""
    from tunesmith import flywheel
    from tunesmith.config.schema import FlywheelConfig
    from tunesmith.flywheel import Answer, walk

    planted_log(tmp_path / "log.sqlite")
    config = FlywheelConfig(run_config="run.yaml", db="log.sqlite", out="iter1", baseline="b.json")
    flywheel.run(config, tmp_path, say=lambda line: None)
    queue_file = tmp_path / "iter1" / "mined" / "queue.jsonl"
    walk(queue_file, lambda item: Answer("reject"))
    flywheel.run(config, tmp_path, overwrite=True, say=lambda line: None)
    assert {i["verdict"] for i in _items(queue_file)} == {"reject"}


def test_synth_against_a_text_corpus(tmp_path):
    """``--against`` a pretraining corpus (text rows, no turns) crashed with an IndexError; its text is compared."""
    from judge_server import JudgeServer, Reply

    from tunesmith.config.schema import JudgeConfig
    from tunesmith.flywheel.synth import SynthOptions, synth

    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"messages": [{"role": "user", "content": "What is the capital of France?"},
                                              {"role": "assistant", "content": "Paris"}]}) + "\n")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Which city is the capital of France, please tell me?\nParis\n\nsomething else entirely\n")
    with JudgeServer(lambda body, n: Reply(200, "Which city is the capital of France, please tell me?")) as server:
        teacher = JudgeConfig(base_url=server.base_url, model="t", max_retries=0, backoff=0)
        result = synth(SynthOptions(seeds=DatasetSpec(path=str(seeds)), out=tmp_path / "out", teacher=teacher,
                                    count=1, against=(DatasetSpec(path=str(corpus)),)))
    assert result.kept + sum(result.rejected.values()) == 1


def test_a_queue_imported_from_csv_is_walked_in_rank_order(tmp_path):
    """CSV cells are text: reviewed.jsonl from a CSV held rank "10", walked before rank "2"."""
    from tunesmith.flywheel import Answer, walk

    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()
    rows = [request(f"r{i}", f"question about {w} {w} {w} and more {w}", "x", created=1000.0 + i)
            for i, w in enumerate(words)]
    db = write_log(tmp_path / "log.sqlite", rows, [feedback(f"r{i}", "down", 0.0) for i in range(len(words))])
    mine(MineOptions(db=db, out=tmp_path / "mined"))
    imported = import_queue(tmp_path / "mined" / "queue.csv")
    seen = []

    def answer(item):
        seen.append(item["rank"])
        return Answer("quit") if len(seen) == 3 else Answer("skip")

    walk(imported.out, answer)
    assert seen == [1, 2, 3]
