"""Real multi-process training on CPU (gloo), launched through ``tunesmith train --nproc 2``
(torch.distributed.run), on the tiny model:

* 2 processes x micro batch 2 = 1 process x micro batch 2 x 2 accumulation steps: the same global
  batches, so the per-step losses agree and the saved models give the same logits; rank 0 alone
  audits, tokenizes and writes the run directory; checkpoints hold both ranks' RNG states;
* SIGKILL of rank 1 stops the whole job (no hung rank) with a message naming it; a rerun with
  another world size is refused; the same command resumes from the last complete checkpoint;
FSDP2 is not run here: torch's ``fully_shard`` works on gloo, but accelerate (the Trainer's engine)
applies FSDP only on accelerators, so on CPU it would train unsharded; tunesmith refuses that before
launch (tests/test_distributed_config.py) and stops if FSDP left the model unsharded anywhere
(``ScheduleRecord``). ``benchmarks/gpu_distributed.py`` runs FSDP2 on CUDA.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import TUNESMITH, run_cli
from tiny import build_model, build_tokenizer

pytestmark = pytest.mark.slow
CHATML = (Path(__file__).resolve().parents[1] / "src/tunesmith/tokenize/templates/chatml.jinja").read_text()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("base")
    tok = build_tokenizer(root, CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>",
                          pad_token="<|endoftext|>")
    build_model(root, tok)
    return root


def _config(base: Path, tmp: Path, name: str, extra: str = "", rows: int = 48) -> Path:
    data = tmp / "data.jsonl"
    if not data.exists():
        data.write_text("".join(json.dumps({"messages": [
            {"role": "user", "content": f"What is {i % 7} plus {i % 5}?"},
            {"role": "assistant", "content": f"The answer is {i % 7 + i % 5}."}]}) + "\n" for i in range(rows)))
    path = tmp / f"{name}.yaml"
    path.write_text(
        f"base_model: {base}\ndatasets:\n  - path: {data}\noutput_dir: {tmp / name}\nsequence_len: 64\n"
        "micro_batch_size: 2\nlearning_rate: 0.002\nbf16: false\nseed: 3\nlora_dropout: 0.0\nlogging_steps: 1\n"
        "audit:\n  fail_on: never\npadding_free: false\nfused_loss: false\n" + extra)
    return path


def _losses(run_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r]
    assert len(steps) == len(set(steps)), f"a step logged twice (two writers?): {steps}"
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def _logits(folder: Path, base: Path):  # type: ignore[no-untyped-def]
    import torch

    from tunesmith.infer import load

    loaded = load(folder)
    ids = torch.tensor([[5, 17, 42, 99, 3, 250, 7]])
    with torch.no_grad():
        return loaded.model(input_ids=ids).logits[0]


DIST = "distributed:\n  device: cpu\n"


@pytest.fixture(scope="module")
def ddp_runs(base, tmp_path_factory):  # type: ignore[no-untyped-def]
    """1 process x micro batch 2 x 2 accumulation steps, and 2 DDP processes x micro batch 2 (shared by
    the tests below: every launch pays torch's import three times)."""
    tmp = tmp_path_factory.mktemp("ddp")
    one = _config(base, tmp, "one", "gradient_accumulation_steps: 2\nmax_steps: 4\nsave_steps: 2\n")
    two = _config(base, tmp, "two", DIST + "max_steps: 4\nsave_steps: 2\n")
    res1 = run_cli("train", str(one), "--quiet", timeout=400)
    assert res1.returncode == 0, res1.stderr[-3000:]
    res2 = run_cli("train", str(two), "--nproc", "2", "--quiet", timeout=400)
    assert res2.returncode == 0, res2.stdout[-3000:] + res2.stderr[-3000:]
    return tmp, res2


def test_two_processes_match_one_process(base, ddp_runs) -> None:
    tmp_path, res2 = ddp_runs
    assert "-m torch.distributed.run --standalone --nnodes 1 --nproc-per-node 2" in res2.stdout
    loss1, loss2 = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert sorted(loss1) == sorted(loss2) == [1, 2, 3, 4]
    for step in loss1:
        assert loss2[step] == pytest.approx(loss1[step], abs=2e-4), (loss1, loss2)
    run1, run2 = (json.loads((tmp_path / n / "run.json").read_text()) for n in ("one", "two"))
    assert run2["status"] == "completed" and run2["global_step"] == 4
    assert run1["schedule"]["effective_batch"] == run2["schedule"]["effective_batch"] == 4
    assert (run2["schedule"]["world_size"], run2["schedule"]["gradient_accumulation_steps"]) == (2, 1)
    assert run2["schedule"]["total_steps"] == 4 and run2["schedule"]["lr_scheduler"] == "cosine"
    # rank 0 tokenized once; rank 1 read its cache
    assert "rank 1: tokenized data from rank 0's cache" in res2.stdout
    assert len(list((tmp_path / "two" / ".cache" / "tokenized").iterdir())) == 1
    assert res2.stdout.count("training: starting at step 0") == 1  # rank 0 speaks for the job
    ckpt = tmp_path / "two" / "checkpoints" / "checkpoint-4"
    assert {p.name for p in ckpt.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert json.loads((ckpt / "tunesmith_complete.json").read_text())["world_size"] == 2
    # the saved adapters are the same model
    diff = (_logits(tmp_path / "one" / "model", base) - _logits(tmp_path / "two" / "model", base)).abs().max()
    assert float(diff) < 1e-3


def _workers(launcher: subprocess.Popen) -> dict[int, int]:
    """rank -> pid of the processes torchrun started under ``launcher``."""
    import psutil

    out = {}
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            env = child.environ()
        except (psutil.Error, OSError):
            continue
        if "RANK" in env and "LOCAL_RANK" in env:
            out[int(env["RANK"])] = child.pid
    return out


def test_killed_rank_stops_the_job_and_resume_completes(base, tmp_path) -> None:
    import psutil

    cfg = _config(base, tmp_path, "kill", DIST + "max_steps: 400\nsave_steps: 2\nsave_total_limit: 1\n", rows=400)
    cmd = [TUNESMITH, "train", str(cfg), "--nproc", "2", "--quiet"]
    launcher = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marker = tmp_path / "kill" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and not list(marker.glob("checkpoint-*/tunesmith_complete.json")):
        assert launcher.poll() is None, launcher.communicate()
        time.sleep(0.2)
    workers = _workers(launcher)
    assert sorted(workers) == [0, 1], workers
    started = time.time()
    Path(f"/proc/{workers[1]}").exists() and __import__("os").kill(workers[1], signal.SIGKILL)
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 1, err[-3000:]
    assert time.time() - started < 60  # rank 0 was stopped, not left waiting in a collective
    assert "the distributed job stopped: rank 1 (local rank 1) stopped (SIGKILL)" in err, err[-4000:]
    assert "run the same command again to resume" in err
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in workers.values())
    record = json.loads((tmp_path / "kill" / "run.json").read_text())
    assert record["status"] == "failed" and "rank 1" in record["error"]
    # another world size is refused with the reason
    refused = run_cli("train", str(cfg), "--nproc", "1", "--quiet", "--set", "max_steps=12", timeout=300)
    assert refused.returncode == 1 and "written by 2 process(es), this attempt runs 1" in refused.stderr
    # the same command (shorter, --resume allows more/less max_steps) continues from the complete checkpoint
    done = sorted(int(p.parent.name.split("-")[1]) for p in marker.glob("checkpoint-*/tunesmith_complete.json"))
    resumed = run_cli("train", str(cfg), "--nproc", "2", "--quiet", "--resume", "--set", f"max_steps={done[-1] + 2}",
                      timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert f"resume: starting at step {done[-1]} from checkpoint-{done[-1]}" in resumed.stdout
    final = json.loads((tmp_path / "kill" / "run.json").read_text())
    assert final["status"] == "completed" and final["global_step"] == done[-1] + 2
    assert sorted(_losses(tmp_path / "kill")) == list(range(1, done[-1] + 3))
