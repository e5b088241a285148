"""What the dashboard tests share: tiny trained runs with an evaluation and a gate, a review queue,
and a headless Chromium (Debian's ``chromium`` driven by Playwright) or a clean skip saying why."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tiny import build_model, build_tokenizer

IM = ["<|im_start|>", "<|im_end|>"]
SYSTEM = "Answer with one word."
WORDS = "the of and to in is was for on that with as by at from it his an were are which this be".split()
# `make screenshots` sets this to docs/screenshots (the README shows them); otherwise a temporary folder,
# so a test run leaves the tracked images alone
SCREENSHOTS_ENV = "TUNESMITH_SCREENSHOTS"
QUEUE = [
    {"id": "q1", "request": [{"role": "user", "content": "color of the sky?"}], "reply": "cat",
     "reason": "thumbs down", "cluster_size": 3, "verdict": None, "correction": None},
    {"id": "q2", "request": "animal that barks?", "reply": "red", "reason": "low logprob", "cluster_size": 7,
     "verdict": None, "correction": None},
    {"id": "q3", "request": "say hello", "reply": "hello hello hello hello", "reason": "loop", "cluster_size": 1,
     "verdict": None, "correction": None},
]


def chromium_path() -> str | None:
    """The system Chromium (TUNESMITH_CHROMIUM, else chromium/chromium-browser on PATH), or None."""
    return os.environ.get("TUNESMITH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def browser_or_skip() -> tuple[Any, Any]:
    """(playwright, browser) on the system Chromium; skips with the reason when either is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need Playwright (pip install 'tunesmith[dev]')")
    path = chromium_path()
    if path is None:
        pytest.skip("browser tests need Chromium: apt-get install chromium (or set TUNESMITH_CHROMIUM)")
    try:
        pw = sync_playwright().start()
    except Exception as exc:  # Playwright's driver cannot run here
        pytest.skip(f"Playwright did not start: {(str(exc).splitlines() or [type(exc).__name__])[0]}")
    try:
        browser = pw.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
    except Exception as exc:  # a Chromium that does not start here: say so instead of failing every test
        pw.stop()
        pytest.skip(f"Chromium at {path} did not start: {(str(exc).splitlines() or [type(exc).__name__])[0]}")
    return pw, browser


def rows(kind: str, answer: str, n: int, offset: int = 0) -> list[dict]:
    def words(i: int) -> str:
        return f"{WORDS[(i + offset) % len(WORDS)]} {WORDS[(3 * i + offset) % len(WORDS)]}"

    return [{"messages": [{"role": "user", "content": f"{kind} {words(i)}"}, {"role": "assistant", "content": answer}]}
            for i in range(n)]


def write_jsonl(path: Path, data: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in data))
    return path


def build_base(root: Path) -> Path:
    from tunesmith.tokenize.tokenizer import template_text

    tok = build_tokenizer(root, template_text("chatml"), IM, eos_token="<|im_end|>", pad_token="<pad>")
    build_model(root, tok)
    return root


def run_config(root: Path, base: Path, name: str, **over: Any) -> dict[str, Any]:
    """A LoRA run on 24 'color ...' rows (answer: red; one duplicated row for the audit to find)."""
    data = rows("color", "red", 24)
    train = write_jsonl(root / f"data_{name}" / "train.jsonl", data + data[:1])
    test = write_jsonl(root / f"data_{name}" / "test.jsonl", rows("color", "red", 6, offset=5))
    return {"base_model": str(base), "chat_template": "chatml", "datasets": [{"path": str(train)}],
            "output_dir": str(root / "runs" / name), "system_prompt": SYSTEM, "sequence_len": 64, "seed": 1,
            "micro_batch_size": 8, "max_steps": 6, "learning_rate": 1e-2, "bf16": False, "lora_r": 8,
            "val_set_size": 4, "eval_steps": 2, "save_steps": 6, "audit": {"fail_on": "never"},
            "probes": {"enabled": False},
            "eval_tasks": [{"name": "color", "path": str(test), "scorer": "label", "labels": ["red", "cat"],
                            "max_new_tokens": 3}], **over}


def train_runs(root: Path) -> dict[str, Path]:
    """Two tiny trained runs (different learning rates), run_a evaluated against its base and gated."""
    from tunesmith import evaluate, gate, train
    from tunesmith.config import config_from_dict

    base = build_base(root / "base")
    out = {}
    for name, lr in (("run_a", 1e-2), ("run_b", 3e-3)):
        config = config_from_dict(run_config(root, base, name, learning_rate=lr))
        out[name] = train.run(config, quiet=True, say=lambda s: None).output_dir
    config = config_from_dict(run_config(root, base, "run_a"))
    evaluate.run(config, base, name="base")
    evaluate.run(config, out["run_a"] / "model", name="tuned")
    eval_dir = out["run_a"] / "eval"
    gate.run(eval_dir / "eval_tuned.json", eval_dir / "eval_base.json")
    write_jsonl(root / "runs" / "review_queue.jsonl", QUEUE)
    return out
