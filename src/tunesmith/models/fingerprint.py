"""Fingerprints of a local model folder: which base a run trained on, and which weights an adapter belongs to.

Files up to 64 MiB are hashed whole; larger ones by 32 evenly spaced 64 KiB samples and their size, so a
multi-GB base costs milliseconds. A hub id stands for itself (``base_fingerprint``) or has no weights
fingerprint (``weights_fingerprint``: there is no local file to compare).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

_WHOLE = 64 << 20  # files up to this size are hashed whole
_SAMPLE, _SAMPLES = 1 << 16, 32  # larger ones: 32 evenly spaced 64 KiB chunks (and their size)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def base_fingerprint(base_model: str) -> str:
    """sha256 over a local base model folder's file names, sizes and bytes (every file not itself hidden:
    weights, config, tokenizer); a hub id stands for itself. What a resumed run must find unchanged."""
    folder = Path(base_model).expanduser()
    if not folder.is_dir():
        return hashlib.sha256(f"hub:{base_model}".encode()).hexdigest()
    return _digest(folder, (p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")))


def weights_fingerprint(model: str) -> str | None:
    """sha256 over the weight files of a local model folder only (a README or a new tokenizer file does not
    change it); None for a hub id or a folder without weight files."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return None
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return _digest(folder, files) if files else None


def _digest(folder: Path, files: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder)}\0{size}\0".encode())
        with path.open("rb") as fh:
            if size <= _WHOLE:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
                continue
            for k in range(_SAMPLES):
                fh.seek((size - _SAMPLE) * k // (_SAMPLES - 1))
                digest.update(fh.read(_SAMPLE))
    return digest.hexdigest()
