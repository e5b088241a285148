"""Choose the training precision for the hardware at hand (``bf16: auto``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    bf16: bool
    fp16: bool
    use_cpu: bool
    reason: str

    @property
    def name(self) -> str:
        return "bf16" if self.bf16 else "fp16" if self.fp16 else "fp32"


def choose(setting: str | bool) -> Precision:
    """``auto``: bf16 where the device has fast bf16, fp16 (+ loss scaling) where only fp16 is fast."""
    cuda = torch.cuda.is_available()
    if setting is True:
        return Precision(True, False, not cuda, "bf16: true in config")
    if setting is False:
        return Precision(False, False, not cuda, "bf16: false in config")
    if cuda:
        if torch.cuda.is_bf16_supported():
            return Precision(True, False, False, "CUDA device supports bf16")
        return Precision(False, True, False, "CUDA device without bf16: fp16 with loss scaling")
    if fast_bf16():
        return Precision(True, False, True, "CPU has bf16 matrix units (AMX / AVX512-BF16)")
    cap = torch.backends.cpu.get_cpu_capability()
    return Precision(False, False, True, f"CPU has no bf16 matrix units ({cap}): fp32 is faster")


def fast_bf16() -> bool:
    """Whether bf16 matmuls are fast here: a CUDA device with bf16, or a CPU with AMX / AVX512-BF16."""
    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
