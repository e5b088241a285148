"""Choose the training precision for the hardware at hand (``bf16: auto``).

bf16 needs compute capability 8.0 (Ampere) or newer on NVIDIA GPUs. Below it,
``torch.cuda.is_bf16_supported()`` can still say True (emulated: slow, and without bf16 tensor
cores), so the capability decides: ``auto`` picks fp16 with loss scaling there, an explicit
``bf16: true`` is refused, and the QLoRA compute dtype follows the choice (``compute_dtype``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from tunesmith.errors import ConfigError

BF16_CAPABILITY = (8, 0)
# oneDNN instruction-set caps (``ONEDNN_MAX_CPU_ISA``) below which its bf16 matmuls are emulated: slower than fp32
_ONEDNN_NO_BF16 = frozenset({"sse41", "avx", "avx2", "avx2_vnni", "avx2_vnni_2", "avx512_core", "avx512_core_vnni"})


def onednn_isa_cap() -> str | None:
    """The instruction-set cap the user gave oneDNN (``ONEDNN_MAX_CPU_ISA``, or its old name ``DNNL_MAX_CPU_ISA``)."""
    value = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return value.strip().lower() if value and value.strip().lower() not in ("all", "default") else None


def cpu_has_fast_bf16(isa_cap: str | None = None) -> bool:
    """AMX or AVX512-BF16 on this CPU, and not capped away by ``ONEDNN_MAX_CPU_ISA`` (bf16 matmuls run in oneDNN)."""
    if (isa_cap or onednn_isa_cap()) in _ONEDNN_NO_BF16:
        return False
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


@dataclass(frozen=True)
class Precision:
    bf16: bool
    fp16: bool
    use_cpu: bool
    reason: str

    @property
    def name(self) -> str:
        return "bf16" if self.bf16 else "fp16" if self.fp16 else "fp32"

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype quantized (QLoRA) layers compute in: bf16 or fp16 as chosen, fp32 otherwise."""
        return torch.bfloat16 if self.bf16 else torch.float16 if self.fp16 else torch.float32

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype mixed-precision training autocasts to (bf16 or fp16); None when it runs in fp32."""
        return self.compute_dtype if self.bf16 or self.fp16 else None


@dataclass(frozen=True)
class Device:
    """What the precision choice depends on (``Device.here()`` reads this machine)."""

    cuda: bool
    capability: tuple[int, int] | None = None  # of CUDA device 0
    name: str = ""
    cpu_fast_bf16: bool = False

    @classmethod
    def here(cls) -> Device:
        if torch.cuda.is_available():
            return cls(True, tuple(torch.cuda.get_device_capability(0)), torch.cuda.get_device_name(0))  # type: ignore[arg-type]
        return cls(False, None, "cpu", cpu_has_fast_bf16())

    @property
    def gpu_bf16(self) -> bool:
        return self.cuda and self.capability is not None and self.capability >= BF16_CAPABILITY


def choose(setting: str | bool, device: Device | None = None) -> Precision:
    """``auto``: bf16 where the device has real bf16, fp16 (+ loss scaling) on older GPUs, fp32 on CPUs without it."""
    device = device or Device.here()
    if setting is True:
        if device.cuda and not device.gpu_bf16:
            cap = ".".join(map(str, device.capability or ()))
            raise ConfigError(f"bf16: true, but {device.name or 'this GPU'} (compute capability {cap}) has no bf16 "
                              "(it needs 8.0+, Ampere or newer; below it bf16 is emulated); use bf16: auto (fp16 with "
                              "loss scaling) or bf16: false (fp32)")
        return Precision(True, False, not device.cuda, "bf16: true in config")
    if setting is False:
        return Precision(False, False, not device.cuda, "bf16: false in config")
    if device.cuda:
        if device.gpu_bf16:
            return Precision(True, False, False, "CUDA device supports bf16")
        cap = ".".join(map(str, device.capability or ()))
        return Precision(False, True, False, f"CUDA device without bf16 (compute capability {cap} < 8.0): fp16 with "
                         "loss scaling")
    if device.cpu_fast_bf16:
        return Precision(True, False, True, "CPU has bf16 matrix units (AMX / AVX512-BF16)")
    cap = torch.backends.cpu.get_cpu_capability()
    if onednn_isa_cap() in _ONEDNN_NO_BF16:
        return Precision(False, False, True, f"ONEDNN_MAX_CPU_ISA={onednn_isa_cap()} leaves no bf16 matrix units ({cap}): "
                         "fp32 is faster")
    return Precision(False, False, True, f"CPU has no bf16 matrix units ({cap}): fp32 is faster")


def fast_bf16() -> bool:
    """Whether bf16 matmuls are fast here: a CUDA device of compute capability 8.0+, or a CPU with AMX / AVX512-BF16."""
    device = Device.here()
    return device.gpu_bf16 if device.cuda else device.cpu_fast_bf16
