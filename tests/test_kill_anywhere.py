"""SIGKILL at 10 moments (mid-step, inside a checkpoint save, inside a rotation, inside the final
save): every rerun starts from the last complete checkpoint (read from its own log line) and the run
ends equal to an uninterrupted one (same per-step losses, same weights, same train loss)."""

from __future__ import annotations

import json
import multiprocessing
import random
import re
import time
from pathlib import Path

import pytest

from tunesmith.train.checkpoints import MARKER

import killrun
from tiny import build_model, build_tokenizer

CHATML = (Path(__file__).resolve().parents[1] / "src/tunesmith/tokenize/templates/chatml.jinja").read_text()
KILLS = ["step", "save", "rotation", "step", "save", "rotation", "step", "step", "final_save", "final_save"]
MAX_STEPS, SAVE_STEPS = 24, 3


def _checkpoints(run_dir: Path) -> list[tuple[int, bool]]:
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    out = []
    for p in root.glob("checkpoint-*"):
        try:
            out.append((int(p.name.rsplit("-", 1)[1]), (p / MARKER).is_file()))
        except ValueError:
            continue
    return sorted(out)


def _last_step(run_dir: Path) -> int:
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return 0
    steps = [json.loads(line).get("step", 0) for line in lines[-3:] if line.strip().endswith("}")]
    return max(steps, default=0)


def _event(kind: str, run_dir: Path, target: int) -> bool:
    if kind == "final_save":
        return any(run_dir.glob(".model.tmp-*"))
    ckpts = _checkpoints(run_dir)
    done = [s for s, complete in ckpts if complete]
    if kind == "save":  # a newer checkpoint folder with files but no marker yet
        return any(not c and s > max(done, default=0) and any((run_dir / "checkpoints" / f"checkpoint-{s}").iterdir())
                   for s, c in ckpts)
    if kind == "rotation":  # an older checkpoint unmarked for deletion while a newer one is complete
        return any(not c and done and s < max(done) for s, c in ckpts)
    return _last_step(run_dir) >= target


def _start(ctx, raw: dict, log: Path, pause: float = 0.0):
    proc = ctx.Process(target=killrun.attempt, args=(raw, str(log), pause))
    proc.start()
    return proc


def _started_at(log: Path, attempt: int) -> int | None:
    """The step attempt number ``attempt`` (1-based) says it starts training from (None: not said yet)."""
    sections = log.read_text().split("=== attempt")[1:] if log.exists() else []
    if len(sections) < attempt:
        return None
    text = sections[attempt - 1]
    match = re.search(r"resume: starting at step (\d+) from checkpoint-\1|training: starting at step (0)", text)
    return int(match.group(1) or match.group(2)) if match else None


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("base")
    tok = build_tokenizer(root, CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>",
                          pad_token="<|endoftext|>")
    build_model(root, tok)
    return root


def _raw(base: Path, tmp: Path, out: str) -> dict:
    data = tmp / "data.jsonl"
    if not data.exists():
        data.write_text("".join(json.dumps({"messages": [
            {"role": "user", "content": f"What is {i % 7} plus {i % 5}?"},
            {"role": "assistant", "content": f"The answer is {i % 7 + i % 5}."}]}) + "\n" for i in range(48)))
    return {"base_model": str(base), "datasets": [{"path": str(data)}], "output_dir": str(tmp / out),
            "sequence_len": 64, "micro_batch_size": 2, "max_steps": MAX_STEPS, "save_steps": SAVE_STEPS,
            "save_total_limit": 1, "learning_rate": 2e-3, "bf16": False, "seed": 3, "audit": {"fail_on": "never"},
            "lora_dropout": 0.0, "logging_steps": 1}


@pytest.mark.slow
def test_sigkill_anywhere_resumes_from_last_complete_checkpoint(base, tmp_path) -> None:
    from safetensors.torch import load_file

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(killrun.PRELOAD)
    rng = random.Random(7)
    ref_raw, raw = _raw(base, tmp_path, "reference"), _raw(base, tmp_path, "run")
    reference = _start(ctx, ref_raw, tmp_path / "reference.log")
    reference.join(300)
    assert reference.exitcode == 0, (tmp_path / "reference.log").read_text()
    run_dir, log = tmp_path / "run", tmp_path / "run.log"
    landed, expected_start = [], 0
    for attempt, kill in enumerate(KILLS, 1):
        start = expected_start
        target = min(start + rng.randint(1, 5), MAX_STEPS - 1)
        proc = _start(ctx, raw, log, pause=0.5 if kill == "rotation" else 0.0)
        deadline = time.time() + 240
        while proc.is_alive() and time.time() < deadline and _started_at(log, attempt) is None:
            time.sleep(0.005)  # leftovers of the previous kill are cleaned up before this line is logged
        while proc.is_alive() and time.time() < deadline and not _event(kill, run_dir, target):
            time.sleep(0.001)
        assert proc.is_alive(), f"attempt finished before the {kill} kill:\n{log.read_text()[-3000:]}"
        proc.kill()
        proc.join()
        assert _started_at(log, attempt) == start, f"attempt {attempt} started at {_started_at(log, attempt)}, not {start}"
        complete = [s for s, c in _checkpoints(run_dir) if c]
        expected_start = max(complete, default=0)
        landed.append((kill, start, expected_start))
    final = _start(ctx, raw, log)
    final.join(300)
    assert final.exitcode == 0, log.read_text()[-3000:]
    assert _started_at(log, len(KILLS) + 1) == expected_start
    assert [k for k, _, _ in landed] == KILLS and len(landed) == 10
    print("kill, started at, next start:", landed)
    got, want = (json.loads((d / "run.json").read_text()) for d in (run_dir, tmp_path / "reference"))
    assert got["status"] == "completed" and got["global_step"] == want["global_step"] == MAX_STEPS
    history = got["attempts"]  # since the last start-over (a kill before any checkpoint starts a new run)
    assert [a["status"] for a in history] == ["interrupted"] * (len(history) - 1) + ["completed"]
    assert history[-1]["from_step"] == expected_start and len(history) >= 8
    steps = lambda d: [(r["step"], r["loss"]) for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())
                       if "loss" in r]
    assert [s for s, _ in steps(run_dir)] == list(range(1, MAX_STEPS + 1)), "a step is missing or repeated"
    assert [l for _, l in steps(run_dir)] == pytest.approx([l for _, l in steps(tmp_path / "reference")], rel=1e-6)
    assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-6)
    weights = [load_file(str(d / "model" / "adapter_model.safetensors")) for d in (run_dir, tmp_path / "reference")]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert (weights[0][name] - weights[1][name]).abs().max().item() <= 1e-6, name
