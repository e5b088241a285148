"""``export.run(options)``: write a trained model in a deployable format and prove it is the same model.

Order: every refusal (unknown format or quant, a quant the gguf library cannot write, an
architecture or tokenizer the writer does not handle, a template without an Ollama translation,
an existing output folder without ``overwrite``) happens before any weight is read; then the
trained model's logits on the probes are taken, the files written, read back and checked.
``export.json`` in the output folder records the source, the files and every check.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.merge import outputs
from tunesmith.export.checks import Check
from tunesmith.export.exporters import exporter, write_manifest
from tunesmith.export.ollama import model_name
from tunesmith.export.source import logits, resolve

MANIFEST = "export.json"


@dataclass(frozen=True)
class ExportOptions:
    source: Path  # a run directory, quickstart folder or model folder
    format: str  # hf | gguf | ollama
    quant: str | None = None  # gguf/ollama: f16 (default) | q8_0 | q4_k_m
    out_dir: Path | None = None  # default: SOURCE/export/<format>[-<quant>]
    overwrite: bool = False
    name: str | None = None  # the model's name (GGUF general.name, `ollama create NAME`)


@dataclass
class ExportResult:
    out_dir: Path
    format: str
    quant: str | None
    checks: list[Check]
    command: str | None
    seconds: float
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]


class ExportCheckFailed(TunesmithError):
    """What was exported does not behave like the trained model."""


def run(options: ExportOptions) -> ExportResult:
    """Export ``options.source`` as ``options.format`` into ``options.out_dir`` and check it read back."""
    t0 = time.perf_counter()
    chosen = exporter(options.format)
    quant = chosen.quant(options.quant)
    source = resolve(options.source)
    out = options.out_dir or Path(options.source) / "export" / "-".join(filter(None, [chosen.name, quant]))
    _check_out(out, [source.folder, *_base_of(source)], options.overwrite)
    chosen.refuse(source, quant)
    name = options.name or model_name(Path(options.source).resolve().name)
    reference = logits(source.load(), source.probe_ids())  # the trained model, before an adapter is folded
    # written and checked beside the export that was there before, which it replaces only once it passed; the
    # files name the folder where the export will be, not the one it is built in (merge/outputs.py)
    with outputs.Replacing(out) as replacing:
        building, at = replacing.building, replacing.named
        manifest: dict[str, Any] = {"format": chosen.name, "quant": quant, "source": str(source.folder.resolve()),
                                    "name": name}
        manifest.update(chosen.write(source, building, quant, name, at=at))
        manifest["files"] = sorted(p.name for p in building.iterdir() if p.name != MANIFEST)
        checks = chosen.verify(source, building, manifest, reference, at=at)
        manifest["checks"] = [c.to_dict() for c in checks]
        manifest["passed"] = all(c.passed for c in checks)
        write_manifest(building, manifest)
        where = replacing.finish(manifest["passed"])
    return ExportResult(where, chosen.name, quant, checks, manifest.get("command"), time.perf_counter() - t0, manifest)


def verify(out_dir: Path) -> ExportResult:
    """Check an existing export again against the model it was made from (``export.json`` names it)."""
    t0 = time.perf_counter()
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise TunesmithError(f"{out_dir}: no {MANIFEST}; not a folder tunesmith export wrote")
    manifest = json.loads(path.read_text("utf-8"))
    chosen = exporter(manifest["format"])
    source = resolve(Path(manifest["source"]))
    reference = logits(source.load(), source.probe_ids())
    checks = chosen.verify(source, Path(out_dir), manifest, reference)
    return ExportResult(Path(out_dir), chosen.name, manifest.get("quant"), checks, manifest.get("command"),
                        time.perf_counter() - t0, manifest)


def raise_if_failed(result: ExportResult) -> None:
    if not result.passed:
        lines = "\n".join(f"  {c.name}: {c.detail}" for c in result.failed)
        raise ExportCheckFailed(f"export {result.out_dir} does not behave like the trained model; do not ship it:\n"
                                f"{lines}")


def _base_of(source: Any) -> list[Path]:
    """The local base an adapter loads on (an export must never replace it)."""
    base = source.info.get("base_model") if source.kind == "adapter" else None
    return [Path(base)] if base and Path(base).is_dir() else []


def _check_out(out: Path, protected: list[Path], overwrite: bool) -> None:
    resolved = out.resolve()
    for folder in protected:
        if resolved == folder.resolve() or folder.resolve().is_relative_to(resolved):
            raise TunesmithError(f"--out {out}: is (or holds) {folder}, which the export reads (the model or its "
                                 "base); choose another folder")
    if out.exists() and not out.is_dir():
        raise TunesmithError(f"--out {out}: is a file; name a folder")
    outputs.refuse_cwd(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise TunesmithError(f"--out {out}: already exists and is not empty; pass --overwrite to replace it "
                             "or choose another folder with --out")
