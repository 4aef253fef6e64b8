"""VRAM and RAM a job needs: a model, a memory profile and a job size in, bytes out.

The formula (documented in the README, to be calibrated on real cards):

Resident size of a component, `size(c)`: its parameters x 1 byte when the profile quantizes it
(the transformer, and T5/LLM text encoders marked `quantizable`), else x 2 bytes (mmgp converts
fp32 weights to the half type), except the VAE, kept in its stored dtype.

VRAM peaks in one of three phases, each running one model at a time (mmgp offloads the others):
    text     = max over text/image encoders of vram(c)
    denoise  = max over transformers of vram(c)   (Wan 2.2's two experts take turns)
               + tokens x hidden x ACTIVATION_BYTES x batch
    decode   = vram(vae) + VAE_BYTES_PER_PIXEL x width x height x batch
    VRAM     = CUDA_CONTEXT + max(text, denoise, decode)
where vram(c) = size(c) when the profile has no budget (the model moves to VRAM whole), else
min(size(c), budget x (2 if async transfers else 1)), the budget being mmgp's per-model MiB cap;
tokens = latent_frames x (height / spatial / patch_h) x (width / spatial / patch_w) and
latent_frames = 1 + (frames - 1) / temporal.

    RAM = PROCESS_RAM + sum of size(c) + PIN_OVERHEAD x pinned bytes + decoded frames (fp32)
where pinned bytes are every component under profiles 1-2 and the transformers under 3, 4, 4+.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from models.catalogue import DTYPE_BYTES, Component, ModelPreset, Role
from models.profiles import MIB, Profile, ProfileSpec

GIB = 1024**3
CUDA_CONTEXT = int(0.6 * GIB)  # CUDA context, cuBLAS/cuDNN workspaces, allocator slack
PROCESS_RAM = int(2.5 * GIB)  # torch, CUDA libraries and the Python process itself
PIN_OVERHEAD = 0.5  # mmgp reserves about half again the pinned bytes
# Live activations of one transformer block per token and unit of width: about twelve half-precision
# tensors of the model's width (residual and normed hidden states, q/k/v, attention output, and the
# MLP's intermediate, 2.7x wide for Wan, with its activation).
ACTIVATION_BYTES = 24
# Peak of a VAE decoder per output pixel of one decoded chunk (fp32 feature maps at full size).
VAE_BYTES_PER_PIXEL = 4096


@dataclass(frozen=True)
class JobSize:
    """The work of one job: output size, frames (1 for an image) and outputs per call."""

    width: int
    height: int
    frames: int = 1
    batch: int = 1


@dataclass(frozen=True)
class MemoryNeed:
    """Peak VRAM and RAM of a job, and which phase sets the VRAM peak."""

    vram_bytes: int
    ram_bytes: int
    peak_phase: str  # "text", "denoise" or "decode"

    def fits(self, vram_bytes: int, ram_bytes: int) -> bool:
        return self.vram_bytes <= vram_bytes and self.ram_bytes <= ram_bytes

    def shortfall(self, vram_bytes: int, ram_bytes: int) -> str | None:
        """None when it fits, else what is missing, in words a user can act on."""
        lacks = []
        if self.vram_bytes > vram_bytes:
            lacks.append(f"needs {_gb(self.vram_bytes)} VRAM ({self.peak_phase}), has {_gb(vram_bytes)}")
        if self.ram_bytes > ram_bytes:
            lacks.append(f"needs {_gb(self.ram_bytes)} RAM, has {_gb(ram_bytes)}")
        return "; ".join(lacks) or None


def estimate(preset: ModelPreset, profile: Profile, size: JobSize) -> MemoryNeed:
    """Peak VRAM and RAM of one job of `size` on `preset` under `profile`."""
    spec = profile.spec
    phases = {
        "text": max((_vram(c, spec) for c in _encoders(preset)), default=0),
        "denoise": _denoise_weights(preset, spec) + working_bytes(preset, size),
        "decode": sum(_vram(c, spec) for c in preset.component(Role.VAE))
        + VAE_BYTES_PER_PIXEL * size.width * size.height * size.batch,
    }
    peak_phase = max(phases, key=lambda name: phases[name])
    resident = sum(resident_bytes(c, spec) for c in preset.components)
    frames_ram = size.frames * size.width * size.height * 3 * 4 * size.batch
    ram = PROCESS_RAM + resident + int(PIN_OVERHEAD * _pinned_bytes(preset, spec)) + frames_ram
    return MemoryNeed(CUDA_CONTEXT + phases[peak_phase], ram, peak_phase)


def feasible_profiles(preset: ModelPreset, size: JobSize, vram_bytes: int, ram_bytes: int) -> list[Profile]:
    """The profiles under which the job fits a card and node, in WanGP's order."""
    return [p for p in Profile if estimate(preset, p, size).fits(vram_bytes, ram_bytes)]


def latent_tokens(preset: ModelPreset, size: JobSize) -> int:
    """Transformer tokens of one sample: latent frames x patched latent height x width."""
    lat = preset.latent
    latent_frames = 1 + (size.frames - 1) // lat.temporal if size.frames > 1 else 1
    pt, ph, pw = lat.patch
    rows = math.ceil(size.height / lat.spatial / ph)
    cols = math.ceil(size.width / lat.spatial / pw)
    return math.ceil(latent_frames / pt) * rows * cols


def working_bytes(preset: ModelPreset, size: JobSize) -> int:
    """Activation memory of the denoising transformer for this job."""
    return latent_tokens(preset, size) * preset.latent.hidden * ACTIVATION_BYTES * size.batch


def resident_bytes(component: Component, spec: ProfileSpec) -> int:
    """Bytes a component takes once loaded under a profile (int8, half, or as stored)."""
    if component.role is Role.VAE:
        return component.bytes
    quantized = spec.quantize and (component.role is Role.TRANSFORMER or component.quantizable)
    per_param = DTYPE_BYTES["int8"] if quantized else min(DTYPE_BYTES[component.dtype], 2)
    return int(component.params * per_param)


def _vram(component: Component, spec: ProfileSpec) -> int:
    size = resident_bytes(component, spec)
    budget = spec.transformer_budget_mib if component.role is Role.TRANSFORMER else spec.other_budget_mib
    if budget is None:
        return size
    return min(size, budget * MIB * (2 if spec.async_transfers else 1))


def _denoise_weights(preset: ModelPreset, spec: ProfileSpec) -> int:
    transformers = preset.component(Role.TRANSFORMER)
    # Experts that take turns (Wan 2.2 A14B) are in VRAM one at a time.
    return max((_vram(c, spec) for c in transformers), default=0)


def _encoders(preset: ModelPreset) -> list[Component]:
    return preset.component(Role.TEXT_ENCODER) + preset.component(Role.IMAGE_ENCODER)


def _pinned_bytes(preset: ModelPreset, spec: ProfileSpec) -> int:
    if spec.pin_all:
        return sum(resident_bytes(c, spec) for c in preset.components)
    if spec.pin_transformer:
        return sum(resident_bytes(c, spec) for c in preset.component(Role.TRANSFORMER))
    return 0


def _gb(n: int) -> str:
    return f"{n / GIB:.1f} GiB"
