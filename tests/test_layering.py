"""Imports flow one way (ARCHITECTURE.md): a package imports only packages before it in the lifecycle."""

from __future__ import annotations

import re
from pathlib import Path

ORDER = ("errors config models data tokenize audit infer plan train evaluate gate merge export serve flywheel "
         "quickstart ui cli").split()
SHARED = {"reporting"}  # HTML pieces: imports no stage, imported by any report
# the one documented exception: a GGUF conversion asks tokenize which ids to stop on (imported in the function)
ALLOWED = {("models", "tokenize", "models/gguf_import.py")}
ROOT = Path(__file__).resolve().parents[1] / "src" / "tunesmith"


def imports(path: Path) -> set[str]:
    text = path.read_text("utf-8")
    found = set(re.findall(r"^\s*from tunesmith\.(\w+)", text, re.M))
    for names in re.findall(r"^\s*from tunesmith import ([\w, ]+)", text, re.M):
        found |= {n.strip().split(" as ")[0] for n in names.split(",") if n.strip() and n.strip() != "__version__"}
    return found


def test_every_import_points_backwards_in_the_lifecycle() -> None:
    wrong = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        pkg = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for dep in imports(path):
            if dep == pkg or pkg not in ORDER:
                continue
            if dep in SHARED and pkg in SHARED:
                continue
            if pkg in SHARED and dep in ORDER:
                wrong.append(f"{rel}: the shared package {pkg} imports the stage {dep}")
            elif dep in ORDER and ORDER.index(dep) > ORDER.index(pkg) and (pkg, dep, str(rel)) not in ALLOWED:
                wrong.append(f"{rel}: {pkg} imports the later {dep}")
    assert not wrong, "\n".join(sorted(wrong))


def test_library_code_leaves_process_state_alone() -> None:
    """Environment, warning filters and other libraries' progress bars are the CLI's to change."""
    pattern = re.compile(r"os\.environ\[[^\]]+\]\s*=|os\.environ\.(setdefault|update)|os\.putenv|"
                         r"warnings\.(filterwarnings|simplefilter)|disable_progress_bar\(|set_verbosity")
    wrong = [f"{p.relative_to(ROOT)}:{n}" for p in ROOT.rglob("*.py") if p.relative_to(ROOT).parts[0] != "cli"
             for n, line in enumerate(p.read_text("utf-8").splitlines(), 1) if pattern.search(line)]
    assert not wrong, wrong


# the GGUF read-backs check what transformers itself reads from a GGUF file or a converted folder
_OWN_TOKENIZER_LOADS = {"export/exporters.py", "models/gguf_import.py"}


def test_one_did_you_mean_and_one_tokenizer_loader() -> None:
    """Every "did you mean" hint comes from ``errors.did_you_mean``; every tokenizer is loaded by
    ``tokenize.tokenizer`` (``load_tokenizer`` / ``load_saved``), except the GGUF read-back checks."""
    wrong = []
    for path in ROOT.rglob("*.py"):
        rel = str(path.relative_to(ROOT))
        text = path.read_text("utf-8")
        if "difflib" in text and rel != "errors.py":
            wrong.append(f"{rel}: difflib outside errors.did_you_mean")
        if "AutoTokenizer.from_pretrained" in text and rel != "tokenize/tokenizer.py" and rel not in _OWN_TOKENIZER_LOADS:
            wrong.append(f"{rel}: loads a tokenizer itself")
    assert not wrong, "\n".join(sorted(wrong))


def test_did_you_mean_matches_aliases_and_shows_the_name_to_write() -> None:
    from tunesmith.config.gpus import unknown_gpu_message
    from tunesmith.errors import did_you_mean

    assert did_you_mean("sharding", ["sharding_strategy", "sharding"]) == " (did you mean 'sharding'?)"
    aliases = {"A100-80GB": "A100-80GB", "A100-SXM4-80GB": "A100-80GB"}
    assert did_you_mean("A100-SXM4-80G", aliases, shown=aliases) == " (did you mean 'A100-80GB'?)"
    assert did_you_mean("A100-SXM4-80G", aliases) == " (did you mean 'A100-SXM4-80GB'?)"  # a mapping is its keys
    assert did_you_mean("zzz", ["sharding"]) == ""
    assert "(did you mean 'RTX-4090'?)" in unknown_gpu_message("rtx 4900")


def test_unknown_fsdp_option_gets_the_shared_hint() -> None:
    import pytest

    from tunesmith.config import config_from_dict
    from tunesmith.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown FSDP option 'min_num_param' \(did you mean 'min_num_params'\?\)"):
        config_from_dict({"base_model": "m", "datasets": ["d.jsonl"],
                          "distributed": {"strategy": "fsdp", "fsdp_options": {"min_num_param": 10}}})
