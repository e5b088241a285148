"""Shared test settings: offline, deterministic, paths to ../shared fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # make test runs one worker per core: one thread each (set before torch is imported, and inherited by
    # the CLI processes tests start), so workers do not contend for the cores; the tiny models gain
    # nothing from a second thread
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TUNESMITH = str(Path(sys.executable).parent / "tunesmith")


def pytest_collection_modifyitems(config, items):
    """Files holding ``slow`` (end-to-end) tests first, in their own order: under make test's workers the
    long files start early and the many short ones fill in at the end, rather than one long file
    running alone at the end while the other core idles."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run the real console script; return the completed process (text output)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [TUNESMITH, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


@pytest.fixture
def cli():
    return run_cli


def run_main(*args: str) -> tuple[int, str, str]:
    """The CLI in this process (no start-up cost): (exit code, stdout, stderr)."""
    import contextlib
    import io

    from tunesmith.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["tunesmith", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available (../shared is absent)")
    return path


@pytest.fixture(scope="session")
def prompt_learning_runs(tmp_path_factory) -> dict[str, Path]:
    """Prompt- and prefix-tuning adapters trained by tunesmith on a tiny chatml base, with a system prompt
    (trained once for the serve and infer tests of prompt learning)."""
    import json

    from tiny import build_model, build_tokenizer
    from tunesmith.config import config_from_dict
    from tunesmith.train import run

    chatml = (Path(__file__).resolve().parents[1] / "src/tunesmith/tokenize/templates/chatml.jinja").read_text()
    root = tmp_path_factory.mktemp("prompt_learning")
    tok = build_tokenizer(root / "base", chatml, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>",
                          pad_token="<|endoftext|>")
    build_model(root / "base", tok)
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"What is {i % 7} plus {i % 5}?"},
        {"role": "assistant", "content": f"The answer is {i % 7 + i % 5}."}]}) + "\n" for i in range(24)))
    out = {}
    for adapter in ("prompt", "prefix"):
        raw = {"base_model": str(root / "base"), "datasets": [{"path": str(data)}], "output_dir": str(root / adapter),
               "sequence_len": 64, "micro_batch_size": 4, "max_steps": 6, "learning_rate": 5e-2, "adapter": adapter,
               "num_virtual_tokens": 4, "bf16": False, "seed": 1, "audit": {"fail_on": "never"},
               "system_prompt": "Answer briefly."}
        run(config_from_dict(raw), quiet=True, say=lambda s: None)
        out[adapter] = root / adapter
    return out
