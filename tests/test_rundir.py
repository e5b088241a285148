"""Run directory rules: nothing deleted that tunesmith did not create or that the run reads, nothing
continued that is not the same run, completed runs left alone, failed starts never block a retry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tunesmith.config import config_from_dict
from tunesmith.train import run
from tunesmith.train.guard import RunDirError

from conftest import run_main
from tiny import build_model, build_tokenizer

CHATML = (Path(__file__).resolve().parents[1] / "src/tunesmith/tokenize/templates/chatml.jinja").read_text()
QUIET = {"quiet": True, "say": lambda line: None}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("base")
    tok = build_tokenizer(root, CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>",
                          pad_token="<|endoftext|>")
    build_model(root, tok)
    return root


def rows(n: int = 16, offset: int = 0) -> str:
    return "".join(json.dumps({"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                                            {"role": "assistant", "content": f"It is {2 * i}."}]}) + "\n"
                   for i in range(offset, offset + n))


def raw(base: Path, tmp: Path, **over) -> dict:
    data = tmp / "data" / "train.jsonl"
    if not data.exists():
        data.parent.mkdir(parents=True, exist_ok=True)
        data.write_text(rows())
    return {"base_model": str(base), "datasets": [{"path": str(data)}], "output_dir": str(tmp / "run"),
            "sequence_len": 64, "micro_batch_size": 4, "max_steps": 2, "save_steps": 1, "learning_rate": 5e-3,
            "bf16": False, "seed": 1, "audit": {"fail_on": "never"}, "lora_dropout": 0.0, **over}


def train(base: Path, tmp: Path, resume: bool = False, overwrite: bool = False, **over):
    return run(config_from_dict(raw(base, tmp, **over)), resume=resume, overwrite=overwrite, **QUIET)


def steps_logged(run_dir: Path) -> list[int]:
    return [r["step"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_overwrite_never_deletes_the_runs_own_data(base, tmp_path) -> None:
    data_dir = tmp_path / "data"
    config = raw(base, tmp_path, output_dir=str(data_dir))  # output_dir = the folder holding the data
    for overwrite in (False, True):
        with pytest.raises(RunDirError, match="holds the run's own input"):
            run(config_from_dict(config), overwrite=overwrite, **QUIET)
    assert (data_dir / "train.jsonl").read_text() == rows()
    config = raw(base, tmp_path, output_dir=str(tmp_path))  # a parent of the data
    with pytest.raises(RunDirError, match="holds the run's own input"):
        run(config_from_dict(config), overwrite=True, **QUIET)
    config = raw(base, tmp_path, output_dir=str(base / "run"))  # inside the base model's folder
    with pytest.raises(RunDirError, match="inside the input folder"):
        run(config_from_dict(config), **QUIET)


def test_output_dir_inside_a_folder_dataset_is_refused(base, tmp_path) -> None:
    config = raw(base, tmp_path, datasets=[{"path": str(tmp_path / "data")}], output_dir=str(tmp_path / "data" / "run"))
    with pytest.raises(RunDirError, match="inside the input folder .*read them as training rows"):
        run(config_from_dict(config), **QUIET)
    assert not (tmp_path / "data" / "run").exists()


def test_overwrite_unlinks_symlinks_and_never_follows_them(base, tmp_path) -> None:
    train(base, tmp_path)
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "file.txt").write_text("keep me")
    os.symlink(keep, tmp_path / "run" / "linked_dir")
    os.symlink(keep / "file.txt", tmp_path / "run" / "checkpoints" / "linked_file")
    result = train(base, tmp_path, overwrite=True)
    assert result.status == "completed"
    assert (keep / "file.txt").read_text() == "keep me"
    assert not (tmp_path / "run" / "linked_dir").exists() and not (tmp_path / "run" / "linked_dir").is_symlink()


def test_completed_run_is_a_no_op_and_extends_only_explicitly(base, tmp_path) -> None:
    first = train(base, tmp_path)
    adapter = (tmp_path / "run" / "model" / "adapter_model.safetensors").read_bytes()
    again = train(base, tmp_path)
    assert again.status == "unchanged" and again.global_step == first.global_step == 2
    assert (tmp_path / "run" / "model" / "adapter_model.safetensors").read_bytes() == adapter
    with pytest.raises(RunDirError, match=r"max_steps: 2 -> 4.*only --resume with more max_steps"):
        train(base, tmp_path, max_steps=4)
    from tunesmith.config.loader import dump_yaml

    cfg = tmp_path / "run.yaml"
    cfg.write_text(dump_yaml(config_from_dict(raw(base, tmp_path))))
    code, out, err = run_main("train", str(cfg), "--quiet")
    assert code == 0 and "already holds this run, completed at step 2: nothing to do" in out, err
    code, out, err = run_main("train", str(cfg), "--quiet", "--resume", "--max-steps", "4")
    assert code == 0 and "done: 4 steps" in out, err
    (tmp_path / "data" / "train.jsonl").write_text(rows(offset=50))  # new data, same config
    code, out, err = run_main("train", str(cfg), "--quiet", "--max-steps", "4")
    assert code == 1 and "its data files have changed since: --overwrite to train on the new inputs" in err
    assert steps_logged(tmp_path / "run") == [1, 2, 3, 4]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [(a["kind"], a["from_step"], a["config_changes"]) for a in record["attempts"]] == [
        ("fresh", 0, {}), ("extend", 2, {"max_steps": [2, 4]})]
    assert "max_steps: 4" in (tmp_path / "run" / "config.yaml").read_text()


def test_a_completed_run_whose_template_or_base_changed_in_place_is_no_no_op(base, tmp_path) -> None:
    """The config is the same, but the template file was edited, or the base's weights replaced, since: the run
    in output_dir is not what this config now trains, so "nothing to do" would be wrong."""
    import shutil

    template = tmp_path / "chat.jinja"
    template.write_text(CHATML)
    shutil.copytree(base, tmp_path / "base")
    over = {"chat_template": str(template)}
    train(tmp_path / "base", tmp_path, **over)
    assert train(tmp_path / "base", tmp_path, **over).status == "unchanged"
    template.write_text(CHATML.replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\nSure: '"))
    assert template.read_text() != CHATML
    with pytest.raises(RunDirError, match=rf"but the chat template \({template}\) has changed since: --overwrite"):
        train(tmp_path / "base", tmp_path, **over)
    template.write_text(CHATML)
    weights = tmp_path / "base" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\1")
    with pytest.raises(RunDirError, match="but the base model's files have changed since"):
        train(tmp_path / "base", tmp_path, **over)


def test_resume_refuses_a_different_run_naming_each_difference(base, tmp_path) -> None:
    train(base, tmp_path, max_steps=3)
    run_json = tmp_path / "run" / "run.json"
    record = json.loads(run_json.read_text())
    record["status"] = "running"  # as if killed after its last checkpoint
    run_json.write_text(json.dumps(record))
    for resume in (False, True):
        with pytest.raises(RunDirError, match=r"learning_rate: 0.005 -> 0.001; seed: 1 -> 2\); learning_rate, seed "
                                              "cannot change within a run"):
            train(base, tmp_path, resume=resume, max_steps=3, learning_rate=1e-3, seed=2)
    (tmp_path / "data" / "train.jsonl").write_text(rows(offset=100))  # same path, other rows
    with pytest.raises(RunDirError, match="cannot resume this run: the data changed"):
        train(base, tmp_path, resume=True, max_steps=3)
    assert json.loads(run_json.read_text())["attempts"] == record["attempts"], "a refused resume left a trace"


def test_resume_continues_the_same_run_once(base, tmp_path) -> None:
    train(base, tmp_path, max_steps=4, save_steps=2)
    run_dir = tmp_path / "run"
    record = json.loads((run_dir / "run.json").read_text())
    record["status"] = "running"  # killed at step 3, after checkpoint-2 ... and checkpoint-4 lost
    (run_dir / "run.json").write_text(json.dumps(record))
    import shutil

    shutil.rmtree(run_dir / "checkpoints" / "checkpoint-4")
    shutil.rmtree(run_dir / "model")
    lines = []
    result = run(config_from_dict(raw(base, tmp_path, max_steps=4, save_steps=2)), quiet=True, say=lines.append)
    assert "resume: starting at step 2 from checkpoint-2" in "\n".join(lines)
    assert result.global_step == 4 and steps_logged(run_dir) == [1, 2, 3, 4]
    final = json.loads((run_dir / "run.json").read_text())
    assert [a["kind"] for a in final["attempts"]] == ["fresh", "resume"]
    assert abs(final["train_loss"] - record["train_loss"]) < 1e-6  # the whole run's mean, not the last attempt's


def test_resume_train_loss_counts_the_steps_between_the_last_log_and_the_checkpoint(base, tmp_path) -> None:
    # logging every 3 steps, a checkpoint every 4: without a log at each save, step 4's loss was never
    # written, and the resumed run's mean lost it (it differed from the uninterrupted run's)
    over = {"max_steps": 6, "save_steps": 4, "logging_steps": 3}
    train(base, tmp_path, **over)
    run_dir = tmp_path / "run"
    record = json.loads((run_dir / "run.json").read_text())
    assert steps_logged(run_dir) == [3, 4, 6]  # the checkpoint's step is logged as well
    record["status"] = "running"  # killed after checkpoint-4
    (run_dir / "run.json").write_text(json.dumps(record))
    import shutil

    shutil.rmtree(run_dir / "checkpoints" / "checkpoint-6")
    shutil.rmtree(run_dir / "model")
    result = train(base, tmp_path, **over)
    assert result.global_step == 6 and steps_logged(run_dir) == [3, 4, 6]
    final = json.loads((run_dir / "run.json").read_text())
    assert [a["kind"] for a in final["attempts"]] == ["fresh", "resume"]
    assert final["train_loss"] == pytest.approx(record["train_loss"], rel=1e-6)


def test_failed_start_never_blocks_the_corrected_retry(base, tmp_path) -> None:
    bad = raw(base, tmp_path, datasets=[{"path": str(tmp_path / "data" / "typo.jsonl")}])
    from tunesmith.data.readers import DataSourceError

    with pytest.raises(DataSourceError, match="no such file"):
        run(config_from_dict(bad), **QUIET)
    # the data is read for the memory check before output_dir is claimed: nothing was written there
    assert not (tmp_path / "run" / "run.json").exists()
    result = train(base, tmp_path)  # corrected: no --overwrite needed
    assert result.status == "completed"
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [a["kind"] for a in record["attempts"]] == ["fresh"]


def test_resume_and_overwrite_together_is_an_error(base, tmp_path) -> None:
    with pytest.raises(RunDirError, match="contradict"):
        train(base, tmp_path, resume=True, overwrite=True)


def test_rejected_rows_from_every_stage(base, tmp_path) -> None:
    data = tmp_path / "data" / "train.jsonl"
    data.parent.mkdir(parents=True)
    too_long = {"messages": [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]}
    muted = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x", "loss_weight": 0}]}
    data.write_text(rows(8) + json.dumps(too_long) + "\n" + '{"messages": [{"role": "user"}]}\n'
                    + json.dumps(muted) + "\n")
    train(base, tmp_path, on_bad_rows="skip", max_steps=1)
    entries = [json.loads(line) for line in (tmp_path / "run" / "rejected_rows.jsonl").read_text().splitlines()]
    assert [(e["line"], e["field"], e["stage"]) for e in entries] == [
        (10, "messages[0].content", "data"), (9, "messages", "tokenize"), (11, "messages", "tokenize")]
    assert entries[0]["reason"] == "is missing" and entries[0]["source"] == str(data)
    assert entries[1]["reason"].startswith("too_long: ") and entries[2]["reason"].startswith("no_trained_token: ")


def test_base_model_files_changed_in_place_are_named(tmp_path) -> None:
    from tunesmith.train.resume import Plan, verify
    from tunesmith.train.rundir import base_fingerprint

    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text('{"hidden_size": 64}')
    weights = base / "model.safetensors"
    weights.write_bytes(bytes(range(256)) * 5000)
    before = base_fingerprint(str(base))
    data = bytearray(weights.read_bytes())
    data[1234567] ^= 1  # one bit
    weights.write_bytes(bytes(data))
    after = base_fingerprint(str(base))
    assert before != after
    plan = Plan("resume", record={"base_fingerprint": before, "data_fingerprint": "d", "tokenizer_fingerprint": "t"})
    problems = verify(plan, {"base_fingerprint": after, "data_fingerprint": "d", "tokenizer_fingerprint": "t"})
    assert len(problems) == 1 and problems[0].startswith("the base model's files changed")


def test_config_yaml_says_where_its_relative_paths_are_from(base, tmp_path, monkeypatch) -> None:
    """A config with relative paths: the run's config.yaml names the working directory they are from, and
    training that file from there (another run name) reads the same data and trains the same adapter."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text(rows())
    over = {"datasets": [{"path": "data/train.jsonl"}], "output_dir": "run"}
    first = train(base, tmp_path, **over)
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert saved.startswith(f"# The resolved config of this run's latest attempt. Its relative paths are from "
                            f"{json.dumps(str(tmp_path))}\n")
    assert "path: data/train.jsonl" in saved
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["attempts"][-1]["workdir"] == str(tmp_path)
    (tmp_path / "again.yaml").write_text(saved.replace("output_dir: run\n", "output_dir: again\n"))
    monkeypatch.chdir(record["attempts"][-1]["workdir"])
    code, out, err = run_main("train", "again.yaml", "--quiet")
    assert code == 0, err
    again = json.loads((tmp_path / "again" / "run.json").read_text())
    assert again["data_fingerprint"] == record["data_fingerprint"] and first.global_step == 2
    assert ((tmp_path / "again" / "model" / "adapter_model.safetensors").read_bytes()
            == (tmp_path / "run" / "model" / "adapter_model.safetensors").read_bytes())


def test_a_run_whose_recorded_process_lives_is_refused_and_a_dead_one_is_not(base, tmp_path) -> None:
    """train.resume's live-run rule (also the dashboard's: a dead one shows interrupted): a run recorded
    as running by a live process on this host is refused; once that process is gone it is not."""
    import socket
    import subprocess
    import sys

    from tunesmith.ui.runs import status_of

    train(base, tmp_path)
    path = tmp_path / "run" / "run.json"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = json.loads(path.read_text())
        record["status"] = "running"
        record["attempts"][-1].update(pid=other.pid, host=socket.gethostname())
        path.write_text(json.dumps(record))
        assert status_of(record) == "running"
        with pytest.raises(RunDirError, match=rf"another tunesmith process \(pid {other.pid}\) is training"):
            train(base, tmp_path, max_steps=4, resume=True)
    finally:
        other.kill()
        other.wait()
    assert status_of(record) == "interrupted"
    assert train(base, tmp_path, max_steps=4, resume=True).global_step == 4
