"""The device a plan sizes against: a named GPU (config/gpus.yaml), this machine's GPU, or its RAM."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config.gpus import canonical_gpu, get_gpu, gpu_table
from tunesmith.plan.shapes import PlanError


@dataclass(frozen=True)
class Device:
    name: str
    kind: str  # gpu | cpu
    memory_gib: float | None  # None: unknown (no check possible)
    peak_tflops: float | None  # None: no time estimate
    bf16: bool
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "memory_gib": self.memory_gib, "peak_tflops": self.peak_tflops,
                "bf16": self.bf16, "source": self.source}


def named_gpu(name: str, key: str) -> Device:
    """A GPU from the table; an unknown name is an error naming ``key`` with the known names."""
    try:
        gpu = get_gpu(name)
    except KeyError as exc:
        raise PlanError(f"{key}: {exc.args[0]}") from None
    return Device(gpu.name, "gpu", gpu.memory_gib, gpu.peak_tflops, gpu.precision == "bf16", gpu.source)


def local_device() -> Device:
    """This machine: its first CUDA device, else its available RAM (CPU training)."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        known = canonical_gpu(props.name.replace("NVIDIA ", "").replace(" ", "-"))
        peak = gpu_table()[known].peak_tflops if known else None
        return Device(props.name, "gpu", props.total_memory / 1024**3, peak, torch.cuda.is_bf16_supported(),
                      "this machine (torch.cuda)")
    return Device("cpu", "cpu", available_ram_gib(), None, False, "this machine: available RAM (/proc/meminfo)")


def available_ram_gib() -> float | None:
    """MemAvailable from /proc/meminfo (Linux); None elsewhere."""
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024**2
    return None
