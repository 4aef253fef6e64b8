"""The GPU table (models/gpu_table.json) and what each architecture allows.

Capabilities follow the compute capability, as WanGP decides them: bf16 from sm80 (fp16 below),
sage2 attention from sm80, fp8 from sm89, nvfp4 from sm120.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

TABLE_PATH = Path(__file__).parent / "gpu_table.json"
GIB = 1024**3


class GpuSpec(BaseModel):
    """One card model of the table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # "RTX 3060", "H100 SXM"
    aliases: list[str] = []  # other spellings, e.g. the CUDA device name "NVIDIA GeForce RTX 3060"
    arch: str  # Pascal, Turing, Ampere, Ada, Hopper, Blackwell
    capability: tuple[int, int]  # CUDA compute capability
    vram_gb: float
    # Dense tensor throughput for the half type the card runs (bf16, or fp16 below sm80).
    half_tflops: float = Field(gt=0)
    bandwidth_gbps: float = Field(gt=0)  # memory bandwidth, GB/s
    source: str = ""

    @property
    def vram_bytes(self) -> int:
        return int(self.vram_gb * GIB)

    @property
    def caps(self) -> ArchCaps:
        return arch_caps(self.capability)


class ArchCaps(BaseModel):
    """What kernels and dtypes a compute capability allows."""

    model_config = ConfigDict(frozen=True)

    bf16: bool
    sage: bool
    sage2: bool
    flash: bool
    fp8: bool
    nvfp4: bool

    @property
    def compute_dtype(self) -> str:
        return "bf16" if self.bf16 else "fp16"


def arch_caps(capability: tuple[int, int]) -> ArchCaps:
    """Capabilities of a compute capability (major, minor)."""
    return ArchCaps(
        bf16=capability >= (8, 0),
        # WanGP offers SageAttention 1 (Triton kernels) from sm70 on.
        sage=capability >= (7, 0),
        sage2=capability >= (8, 0),
        flash=capability >= (8, 0),
        fp8=capability >= (8, 9),
        nvfp4=capability >= (12, 0),
    )


class UnknownGpu(LookupError):
    """A GPU name that the table does not hold."""


@cache
def gpu_table() -> dict[str, GpuSpec]:
    """All cards by name, read once."""
    rows = json.loads(TABLE_PATH.read_text())
    return {spec.name: spec for spec in (GpuSpec.model_validate(row) for row in rows)}


def find_gpu(name: str) -> GpuSpec:
    """The table row for a card name or alias, case and vendor prefix ignored."""
    spec = _by_any_name().get(_normalise(name))
    if spec is None:
        raise UnknownGpu(f"unknown GPU {name!r}; known: {', '.join(gpu_table())}")
    return spec


@cache
def _by_any_name() -> dict[str, GpuSpec]:
    # Every name and alias, normalised, to its row (the first in table order wins): the simulator
    # looks a card up for every finished job.
    index: dict[str, GpuSpec] = {}
    for spec in gpu_table().values():
        for alias in (spec.name, *spec.aliases):
            index.setdefault(_normalise(alias), spec)
    return index


def _normalise(name: str) -> str:
    text = name.lower()
    for prefix in ("nvidia ", "geforce "):
        text = text.removeprefix(prefix)
    return " ".join(text.split())
