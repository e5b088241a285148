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
