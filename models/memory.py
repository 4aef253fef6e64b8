"""VRAM and RAM a job needs: a model, a memory profile and a job size in, bytes out.

The formula (documented in docs/memory.md, to be calibrated on real cards):

Resident size of a component, `size(c)`: its parameters x 1 byte when the profile quantizes it
(the transformer, and T5/LLM text encoders marked `quantizable`), else x 2 bytes (mmgp converts
fp32 weights to the half type), except the VAE, kept in its stored dtype. A transformer read from a
prequantized file (`dequantized`: GGUF, NVFP4, fp8, NF4) is held dequantized, 2 bytes a parameter
under every profile (models.prequantized).

VRAM peaks in one of three phases, each running one model at a time (mmgp offloads the others):
    text     = max over text/image encoders of vram(c)
    denoise  = max over transformers of vram(c)   (Wan 2.2's two experts take turns)
               + vram(controlnet)                 (Z-Image's ControlNet runs beside it)
               + tokens x (HIDDEN_BYTES x hidden + FFN_BYTES x ffn width) x batch
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
# Live activations of a denoising forward per token: bytes per unit of the transformer's width and
# of its MLP's width. Measured on an H100 (bf16, sdpa, tests/gpu/calibrate.py, 2026-11-26): Wan 2.1
# 1.3B (1536 wide, MLP 8960) peaks at 48.7 kB a token, the 14B (5120, MLP 13824) at 113.4 kB, at
# 14k-76k tokens; these two constants reproduce both within 1%. The MLP term matters: one
# constant per unit of width was 32% low for the 1.3B and 8% high for the 14B.
HIDDEN_BYTES = 14
FFN_BYTES = 3
# Peak of a VAE decode over its weights, per pixel of a frame. Measured for the Wan VAE over 81
# frames on an H100: tiled (the runner tiles on CUDA) 2.3-2.5 kB in bf16, 4.5-4.9 kB in fp32; whole
# frames 11.8 kB in bf16 and 23.6 kB in fp32, which is why the runner tiles. Other VAEs not measured.
VAE_BYTES_PER_PIXEL = 4096
CONTROLNET = "controlnet"  # the component folder of a ControlNet, which runs beside the transformer


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
    lat = preset.latent
    per_token = HIDDEN_BYTES * lat.hidden + FFN_BYTES * lat.ffn_width
    return latent_tokens(preset, size) * per_token * size.batch


def resident_bytes(component: Component, spec: ProfileSpec) -> int:
    """Bytes a component takes once loaded under a profile (int8, half, or as stored)."""
    if component.role is Role.VAE:
        return component.bytes
    quantized = spec.quantize and not component.dequantized
    quantized = quantized and (component.role is Role.TRANSFORMER or component.quantizable)
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
    # Experts that take turns (Wan 2.2 A14B) are in VRAM one at a time; a ControlNet (Z-Image's)
    # runs beside the transformer at every step, so it adds to it.
    beside = [c for c in transformers if c.name == CONTROLNET]
    turns = [c for c in transformers if c.name != CONTROLNET]
    return max((_vram(c, spec) for c in turns), default=0) + sum(_vram(c, spec) for c in beside)


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
