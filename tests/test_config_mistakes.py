"""Config mistakes: each is one line naming file:line (and column for YAML syntax), exit 1, no traceback,
reported before any data is read (the dataset path does not even exist).

Model-dependent checks (adapter target names, chat template, transformers' argument checks) run in
``tunesmith train``'s preflight, before data loading; the rest at load time without heavy imports.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_main
from tiny import build_model, build_tokenizer

CHATML = (Path(__file__).resolve().parents[1] / "src/tunesmith/tokenize/templates/chatml.jinja").read_text()
HEAD = "base_model: {base}\ndatasets:\n  - path: {data}\noutput_dir: {out}\n"  # the extra text starts on line 5

# (name, extra YAML or a whole document, expected line[:column], fragment of the message)
MISTAKES = [
    ("lr_scheduler typo", "lr_scheduler: cosin\n", "5", "lr_scheduler: 'cosin' is not accepted by the installed "
     "transformers (did you mean 'cosine'?)"),
    ("optimizer typo", "optimizer: adamw_torh\n", "5", "(did you mean 'adamw_torch'?)"),
    ("lora_target_modules typo", "lora_target_modules: [q_proj, v_projj]\n", "5",
     "lora_target_modules: 'v_projj' is not a module of"),
    ("LLaMA-Factory lora_target typo", "lora_target: q_proj,k_prog\n", "5", "'k_prog' is not a module of"),
    ("report_to typo", "report_to: wandbb\n", "5", "(did you mean 'wandb'?)"),
    ("report_to not installed", "report_to: wandb\n", "5", "report_to: wandb needs the 'wandb' package"),
    ("loss_type typo", "method: dpo\nloss_type: sigmod\n", "6", "(did you mean 'sigmoid'?)"),
    ("chat_template typo", "chat_template: chatmll\n", "5", "(did you mean 'chatml'?)"),
    ("YAML bad indentation", "lora_r: 8\n  lora_alpha: 16\n", "6:13", "mapping values are not allowed here"),
    ("YAML tab", "lora_r: 8\n\tlora_alpha: 16\n", "6:1", "spaces, not tabs"),
    ("YAML unclosed quote", "system_prompt: 'You are\nlora_r: 8\n", "7:1", "not valid YAML"),
    ("YAML unclosed bracket", "lora_target_modules: [q_proj, v_proj\nlora_r: 8\n", "6:7", "not valid YAML"),
    ("duplicate key", "learning_rate: 1.0e-4\nlora_r: 8\nlearning_rate: 2.0e-4\n", "7:1",
     "learning_rate: set twice (first on line 5)"),
    ("duplicate key in a dataset", None, "4:5", "path: set twice (first on line 3)"),
    ("unknown key", "learning_rat: 1.0e-4\n", "5", "learning_rat: unknown key (did you mean 'learning_rate'?)"),
    ("unknown dataset key", None, "4", "datasets[0].tpye: unknown key (did you mean 'type'?)"),
    ("wrong type: number", "learning_rate: fast\n", "5", "learning_rate: must be a number (got 'fast')"),
    ("wrong type: integer", "micro_batch_size: 2.5\n", "5", "micro_batch_size: must be a whole number"),
    ("wrong type: boolean", "sample_packing: maybe\n", "5", "sample_packing: must be true or false"),
    ("wrong type: list", None, "2", "datasets: must be a list"),
    ("bad value: negative", "lora_r: -1\n", "5", "lora_r: must be > 0 (got -1)"),
    ("bad value: enum", "adapter: lorra\n", "5", "(did you mean 'lora'?)"),
    ("bad value: method", "method: sfft\n", "5", "(did you mean 'sft'?)"),
    ("bad value: fraction", "val_set_size: 1.5\n", "5", "val_set_size: a fraction must be < 1"),
    ("bad value: nested", "audit:\n  fail_on: warn\n", "6", "audit.fail_on: must be one of error, warning, never"),
    ("save_steps vs eval_steps", "val_set_size: 0.1\neval_steps: 3\nsave_steps: 4\n", "7",
     "save_steps: must be a multiple of eval_steps (3)"),
    ("stride too long", "sequence_len: 64\nstride: 64\n", "6", "stride: must be < sequence_len"),
    ("same setting twice", "sequence_len: 64\ncutoff_len: 128\n", "6", "sequence_len: set twice"),
    ("missing base_model", None, "1", "base_model: required"),
    ("missing dataset path", None, "3", "datasets[0].path: required"),
    ("not a mapping", None, "1", "a config must be a mapping"),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("base")
    tok = build_tokenizer(root, CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>",
                          pad_token="<|endoftext|>")
    build_model(root, tok, max_positions=2048)  # the default sequence_len fits: each case fails for its own mistake
    return root


def _document(name: str, extra: str | None, base: Path, tmp: Path) -> str:
    head = HEAD.format(base=base, data=tmp / "missing.jsonl", out=tmp / "run")
    whole = {
        "duplicate key in a dataset": head.replace("  - path: ", "  - path: a.jsonl\n    path: "),
        "unknown dataset key": head.replace("output_dir", "    tpye: chat\noutput_dir"),
        "wrong type: list": f"base_model: {base}\ndatasets: {tmp / 'missing.jsonl'}\n",
        "missing base_model": head.replace(f"base_model: {base}\n", ""),
        "missing dataset path": head.replace(f"  - path: {tmp / 'missing.jsonl'}\n", "  - type: chat\n"),
        "not a mapping": "- base_model: x\n- datasets: []\n",
    }
    return whole[name] if extra is None else head + extra


@pytest.mark.parametrize("name,extra,where,fragment", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_config_mistake_is_one_line_with_file_and_line(base, tmp_path, name, extra, where, fragment) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(_document(name, extra, base, tmp_path))
    code, out, err = run_main("train", str(path), "--quiet")
    assert code == 1, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {path}:{where}: "), err
    assert fragment in lines[0], err
    assert "Traceback" not in err and "missing.jsonl: no such file" not in err
    assert not (tmp_path / "run").exists(), "a config error must leave no run directory"


def test_at_least_26_kinds() -> None:
    assert len(MISTAKES) >= 26


def test_config_errors_import_nothing_heavy(tmp_path) -> None:
    """`tunesmith train bad.yaml` validates before importing torch/transformers (so it answers in well
    under a second; the time itself is measured in BENCHMARKS.md, not here)."""
    path = tmp_path / "bad.yaml"
    path.write_text("base_model: m\ndatasets:\n  - path: d.jsonl\nlr_scheduler: cosin\n")
    script = (
        "import sys\nfrom tunesmith.cli.main import main\n"
        f"sys.argv = ['tunesmith', 'train', {str(path)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        "print(code, sorted(m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets', 'numpy') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.stdout.strip() == "1 []", (done.stdout, done.stderr)
    assert "did you mean 'cosine'" in done.stderr


def test_internal_error_exit_code_and_report(tmp_path, monkeypatch) -> None:
    """A bug (any exception that is not a user mistake) exits 70 with one line saying where the traceback is."""
    import tunesmith.config

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(tunesmith.config, "load_config", broken)
    code, _, err = run_main("config", "whatever.yaml")
    assert code == 70
    assert err.startswith("internal error: RuntimeError: boom") and "Traceback" not in err
    report = Path(err.split("written to ")[1].split(" (or rerun")[0])
    assert "RuntimeError: boom" in report.read_text() and "Traceback" in report.read_text()
    report.unlink()
    code, _, err = run_main("--debug", "config", "whatever.yaml")
    assert code == 70 and "Traceback" in err
