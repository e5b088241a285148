"""Check a GGUF file before converting it: readable, complete, and made of things transformers can load.

Reading only the header (metadata and tensor table, a fraction of a second even for a large
vocabulary) turns the failures a conversion would hit after a minute of work into one
sentence up front: not a GGUF at all, cut short (the tensor data ends past the end of the file),
an architecture transformers' GGUF loader does not know, or a quantization type it cannot
dequantize. Value and tensor types come from the ``gguf`` package's constants.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError


class GGUFError(TunesmithError):
    """A GGUF file that cannot be converted; the message names the file and what to do."""


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_REDOWNLOAD = "download or copy it again"


@dataclass(frozen=True)
class TensorEntry:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # from the start of the data section


@dataclass(frozen=True)
class GGUFHeader:
    """What a GGUF file says about itself (string arrays such as the vocabulary are only counted)."""

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: tuple[TensorEntry, ...]
    data_start: int

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def type_names(self) -> dict[str, int]:
        """``{quantization type name: tensor count}``, e.g. ``{"Q4_1": 210, "F32": 61}``."""
        from gguf import GGMLQuantizationType

        counts: dict[str, int] = {}
        for t in self.tensors:
            name = GGMLQuantizationType(t.ggml_type).name if t.ggml_type in _known_types() else str(t.ggml_type)
            counts[name] = counts.get(name, 0) + 1
        return counts


def read_header(path: Path) -> GGUFHeader:
    """Parse ``path``'s header; a file that is not a GGUF or is cut short raises ``GGUFError``."""
    if not path.is_file():
        raise GGUFError(f"{path}: no such GGUF file; check the path")
    with path.open("rb") as fh:
        if path.stat().st_size < 24:
            raise GGUFError(f"{path}: only {path.stat().st_size} bytes, not a GGUF file; {_REDOWNLOAD}")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as blob:
            if blob[:4] != b"GGUF":
                raise GGUFError(f"{path}: not a GGUF file (it starts with {bytes(blob[:4])!r}, not b'GGUF'); "
                                f"check the path, or {_REDOWNLOAD}")
            try:
                return _parse(path, blob)
            except (struct.error, IndexError, UnicodeDecodeError, ValueError, OverflowError):
                raise GGUFError(f"{path}: the GGUF header is cut short or corrupt; {_REDOWNLOAD}") from None


def _parse(path: Path, blob: mmap.mmap) -> GGUFHeader:
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", blob, 4)
    if version not in (2, 3):
        raise GGUFError(f"{path}: GGUF version {version} is not supported (only 2 and 3); convert it with a "
                        "current llama.cpp")
    pos = 24
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key, pos = _string(blob, pos)
        (kind,), pos = struct.unpack_from("<I", blob, pos), pos + 4
        metadata[key], pos = _value(blob, pos, kind)
    tensors = []
    for _ in range(n_tensors):
        name, pos = _string(blob, pos)
        (dims,), pos = struct.unpack_from("<I", blob, pos), pos + 4
        shape = struct.unpack_from(f"<{dims}Q", blob, pos)
        ggml_type, offset = struct.unpack_from("<IQ", blob, pos + 8 * dims)
        pos += 8 * dims + 12
        tensors.append(TensorEntry(name, tuple(reversed(shape)), ggml_type, offset))
    alignment = int(metadata.get("general.alignment", 32))
    if alignment <= 0:
        raise ValueError(f"general.alignment {alignment}")
    return GGUFHeader(path, version, metadata, tuple(tensors), (pos + alignment - 1) // alignment * alignment)


def _string(blob: mmap.mmap, pos: int) -> tuple[str, int]:
    (size,) = struct.unpack_from("<Q", blob, pos)
    end = pos + 8 + size
    if end > len(blob):
        raise ValueError("string past the end of the file")
    return blob[pos + 8 : end].decode("utf-8"), end


def _value(blob: mmap.mmap, pos: int, kind: int) -> tuple[Any, int]:
    if kind == _STRING:
        return _string(blob, pos)
    if kind in _SCALARS:
        fmt = _SCALARS[kind]
        return struct.unpack_from(fmt, blob, pos)[0], pos + struct.calcsize(fmt)
    if kind != _ARRAY:
        raise ValueError(f"unknown metadata value type {kind}")
    item, count = struct.unpack_from("<IQ", blob, pos)
    pos += 12
    if item in _SCALARS:  # fixed-size items: skip them in one step, keep a count
        return f"<{count} values>", pos + count * struct.calcsize(_SCALARS[item])
    for _ in range(count):  # strings (a vocabulary) or nested arrays: walk them, keep a count
        _, pos = _value(blob, pos, item)
    return f"<{count} values>", pos


def _known_types() -> dict[int, tuple[int, int]]:
    from gguf import GGML_QUANT_SIZES

    return {int(k): v for k, v in GGML_QUANT_SIZES.items()}


def _dequantizable(ggml_type: int) -> bool:
    """Whether the ``gguf`` package (what transformers dequantizes with) can unpack this type."""
    import numpy as np
    from gguf import GGMLQuantizationType, dequantize

    block, size = _known_types()[ggml_type]
    try:
        dequantize(np.zeros(size, dtype=np.uint8), GGMLQuantizationType(ggml_type))
    except NotImplementedError:
        return False
    return True


def check(header: GGUFHeader) -> None:
    """Raise ``GGUFError`` unless transformers can load every part of the file."""
    path, known = header.path, _known_types()
    _check_not_split(header)
    unknown = sorted({t.ggml_type for t in header.tensors if t.ggml_type not in known})
    if unknown:
        raise GGUFError(f"{path}: tensor types {unknown} are unknown to the installed gguf package; "
                        f"upgrade it (pip install -U gguf) or use a GGUF with a common quantization (Q8_0, Q4_K_M, F16)")
    end = 0
    for t in header.tensors:
        block, size = known[t.ggml_type]
        elements = 1
        for d in t.shape:
            elements *= d
        end = max(end, header.data_start + t.offset + elements // block * size)
    actual = path.stat().st_size
    if end > actual:
        raise GGUFError(f"{path}: truncated: its tensors end at byte {end:,} but the file has {actual:,} bytes; "
                        f"{_REDOWNLOAD}")
    _check_architecture(header)
    for ggml_type in sorted({t.ggml_type for t in header.tensors}):
        if not _dequantizable(ggml_type):
            from gguf import GGMLQuantizationType

            name = GGMLQuantizationType(ggml_type).name
            first = next(t.name for t in header.tensors if t.ggml_type == ggml_type)
            raise GGUFError(f"{path}: quantization type {name} (tensor {first}) cannot be dequantized by the "
                            f"gguf package transformers uses; use a GGUF of this model in another "
                            f"quantization (Q8_0, Q4_K_M, Q4_1, F16)")


def _check_not_split(header: GGUFHeader) -> None:
    """One part of a model llama.cpp split into several files holds only some of its tensors (the parts after
    the first not even the metadata); transformers' GGUF loader reads single files only."""
    count = header.metadata.get("split.count")
    if isinstance(count, int) and count > 1:
        part = header.metadata.get("split.no")
        which = f"part {part + 1} of {count}" if isinstance(part, int) else f"one of {count} parts"
        raise GGUFError(f"{header.path}: {which} of a split GGUF (llama.cpp's gguf-split); merge the parts into one "
                        "file first (llama-gguf-split --merge FIRST-PART.gguf MERGED.gguf) and use that")


def supported_architectures() -> list[str]:
    """GGUF architecture names transformers can load (its legacy loader's and its packed-weights loader's)."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    names = set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"}  # metadata groups, not architectures
    try:
        from transformers.integrations.gguf import GGUF_ARCHS

        names |= set(GGUF_ARCHS)
    except ImportError:  # older transformers 5.x: the legacy loader only
        pass
    return sorted(names)


def _plain(name: str) -> str:
    """llama.cpp writes 'qwen2moe' and 'gpt-oss' where transformers says 'qwen2_moe' and 'gpt_oss'."""
    return name.replace("_", "").replace("-", "")


def _check_architecture(header: GGUFHeader) -> None:
    arch = header.architecture
    if not arch:
        raise GGUFError(f"{header.path}: no general.architecture in the GGUF metadata; {_REDOWNLOAD}")
    supported = supported_architectures()
    if _plain(arch) not in {_plain(name) for name in supported}:
        raise GGUFError(f"{header.path}: architecture '{arch}' cannot be loaded by transformers' GGUF loader "
                        f"(it knows {', '.join(supported)}); use the model's original Hugging Face checkpoint instead")
