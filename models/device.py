"""The local GPUs, probed through torch: name, compute capability, total and free VRAM."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models.gpus import ArchCaps, GpuSpec, UnknownGpu, arch_caps, find_gpu


@dataclass(frozen=True)
class LocalGpu:
    """One CUDA device as probed now; `spec` is its GPU-table row when the table knows the card."""

    index: int
    name: str
    capability: tuple[int, int]
    total_vram_bytes: int
    free_vram_bytes: int
    spec: GpuSpec | None

    @property
    def caps(self) -> ArchCaps:
        return arch_caps(self.capability)

    @property
    def arch(self) -> str:
        return self.spec.arch if self.spec else f"sm{self.capability[0]}{self.capability[1]}"


def detect_gpus() -> list[LocalGpu]:
    """Every visible CUDA device; empty on a CPU-only machine or a CPU build of torch."""
    if not torch.cuda.is_available():
        return []
    return [_probe(i) for i in range(torch.cuda.device_count())]


def _probe(index: int) -> LocalGpu:
    name = torch.cuda.get_device_name(index)
    free, total = torch.cuda.mem_get_info(index)
    try:
        spec: GpuSpec | None = find_gpu(name)
    except UnknownGpu:
        spec = None
    major, minor = torch.cuda.get_device_capability(index)
    return LocalGpu(index, name, (major, minor), total, free, spec)
