"""merge/outputs.Replacing: a merge or export folder only ever holds a complete result that passed its check,
even when the process is killed while the result is being written or checked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunesmith.merge.outputs import Replacing, recover

DEAD = 2**22 + 12345  # above Linux's pid_max: no such process


def _previous(tmp_path: Path) -> Path:
    out = tmp_path / "merged"
    out.mkdir()
    (out / "model.txt").write_text("the earlier result")
    return out


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_passing_result_replaces_the_previous_folder(tmp_path: Path) -> None:
    out = _previous(tmp_path)
    with Replacing(out) as replacing:
        (replacing.building / "model.txt").write_text("new")
        assert (out / "model.txt").read_text() == "the earlier result"  # untouched while the new one is checked
        assert replacing.finish(True) == out
    assert (out / "model.txt").read_text() == "new" and _names(tmp_path) == ["merged"]


def test_a_failing_result_goes_to_failed_and_the_previous_never_moves(tmp_path: Path) -> None:
    out = _previous(tmp_path)
    with Replacing(out) as replacing:
        (replacing.building / "model.txt").write_text("broken")
        assert replacing.destination(False) == tmp_path / "merged.failed"
        assert replacing.finish(False) == tmp_path / "merged.failed"
    assert (out / "model.txt").read_text() == "the earlier result"
    assert (tmp_path / "merged.failed" / "model.txt").read_text() == "broken"
    assert _names(tmp_path) == ["merged", "merged.failed"]


def test_an_error_while_writing_deletes_the_half_result_and_keeps_the_previous(tmp_path: Path) -> None:
    out = _previous(tmp_path)
    with pytest.raises(RuntimeError), Replacing(out) as replacing:
        (replacing.building / "half.bin").write_text("x")
        raise RuntimeError("killed halfway")
    assert _names(out) == ["model.txt"] and (out / "model.txt").read_text() == "the earlier result"
    assert _names(tmp_path) == ["merged"]
    with pytest.raises(RuntimeError), Replacing(tmp_path / "fresh"):  # nothing there before: nothing left
        raise RuntimeError("killed")
    assert not (tmp_path / "fresh").exists() and _names(tmp_path) == ["merged"]


def test_recover_undoes_what_a_killed_run_left(tmp_path: Path) -> None:
    out = _previous(tmp_path)
    (tmp_path / f".merged.building-{DEAD}").mkdir()  # killed while checking: never checked, deleted
    (tmp_path / f".merged.old-{DEAD}").mkdir()  # killed after the new one was in place: a leftover, deleted
    (tmp_path / f".merged.building-{os.getpid()}").mkdir()  # a live run's: left alone
    (tmp_path / ".mergedx.building-1").mkdir()  # another folder's
    assert len(recover(out)) == 2
    assert _names(tmp_path) == [f".merged.building-{os.getpid()}", ".mergedx.building-1", "merged"]
    assert (out / "model.txt").read_text() == "the earlier result"
    # killed between the two renames: merged/ is missing and the previous result is back
    os.replace(out, tmp_path / f".merged.old-{DEAD}")
    recover(out)
    assert (out / "model.txt").read_text() == "the earlier result"
    # an earlier version wrote the new result under merged/ and set the previous one aside: the unchecked one goes
    os.replace(out, tmp_path / f".merged.previous-{DEAD}")
    out.mkdir()
    (out / "model.txt").write_text("unchecked")
    recover(out)
    assert (out / "model.txt").read_text() == "the earlier result"
    assert not list(tmp_path.glob(".merged.*-" + str(DEAD)))


def test_the_next_replacing_recovers_before_it_writes(tmp_path: Path) -> None:
    out = _previous(tmp_path)
    os.replace(out, tmp_path / f".merged.old-{DEAD}")
    (tmp_path / f".merged.building-{DEAD}").mkdir()
    with Replacing(out) as replacing:
        assert (out / "model.txt").read_text() == "the earlier result"
        replacing.finish(False)
    assert (out / "model.txt").read_text() == "the earlier result"
    assert _names(tmp_path) == ["merged", "merged.failed"]


CHILD = """
import importlib, sys, time
from pathlib import Path
from tunesmith.config import load_config

def check_that_never_ends(merged_dir, *args, **kwargs):  # the logit check, reached after the weights were written
    assert (Path(merged_dir) / "config.json").is_file()
    Path(sys.argv[2]).write_text(str(merged_dir))
    time.sleep(600)

stage = importlib.import_module("tunesmith.merge.run")  # the module (tunesmith.merge.run is also the function)
stage._compare = check_that_never_ends
config = load_config(sys.argv[1])
stage.run(config, stage.probe_prompts(config, 1))
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_merge_killed_during_its_check_leaves_the_previous_merged_folder(tmp_path: Path, sig: int) -> None:
    """merge CONFIG killed after writing the new weights, before the check: merged/ was the unchecked merge, and
    the previous one stayed at .merged.previous-<pid> for good; `export` then exported the unchecked one."""
    from tunesmith.export.source import resolve

    run = _adapter_run(tmp_path)
    (run / "merged").mkdir()
    (run / "merged" / "earlier.txt").write_text("the merge that passed")
    (tmp_path / "child.py").write_text(CHILD)
    flag = tmp_path / "checking"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    child = subprocess.Popen([sys.executable, str(tmp_path / "child.py"), str(run / "config.yaml"), str(flag)],
                             env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not flag.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert flag.exists(), child.stderr.read() if child.poll() is not None else "the child never reached the check"
    child.send_signal(sig)
    child.wait(60)
    assert _names(run / "merged") == ["earlier.txt"]  # nothing unchecked where export, chat and serve look
    assert Path(flag.read_text()).name == f".merged.building-{child.pid}"
    # export, reading the run next, puts everything in order first: the leftover goes
    assert resolve(run).folder == run / "model"  # (merged/ here is a placeholder, not a model)
    assert not list(run.glob(".merged.*")) and _names(run / "merged") == ["earlier.txt"]


def _adapter_run(root: Path) -> Path:
    """A run directory with a LoRA adapter in model/ (as train leaves it) on a tiny base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.config import config_from_dict
    from tunesmith.config.loader import dump_yaml
    from tunesmith.tokenize.tokenizer import template_text
    from tunesmith.train.artifacts import save_result
    from tiny import build_model, build_tokenizer

    base = root / "base"
    build_model(base, build_tokenizer(base, template_text("chatml"), ["<|im_start|>", "<|im_end|>"],
                                      eos_token="<|im_end|>", pad_token="<pad>"))
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    run = root / "run"
    save_result(model, AutoTokenizer.from_pretrained(str(base)), run / "model",
                {"base_model": str(base), "chat_template": "chatml", "system_prompt": None})
    data = run / "train.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "red"}]}\n')
    raw = {"base_model": str(base), "chat_template": "chatml", "datasets": [{"path": str(data)}],
           "output_dir": str(run), "sequence_len": 64}
    (run / "config.yaml").write_text(dump_yaml(config_from_dict(raw)))
    return run
