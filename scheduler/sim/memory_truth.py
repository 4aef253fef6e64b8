"""The simulator's ground truth of a job's peak VRAM and RAM: its own form, not models.memory's.

The estimator the policies use (models.memory) and this truth share only facts: the catalogue's
component bytes and dtypes, a profile's settings, and the latent geometry (tokens of a job). The
form and constants are the truth's own (docs/simulator-truth.md gives the fit and its data):

    VRAM = CONTEXT + max over phases of (weights in VRAM + working bytes x luck)
    text    = the largest encoder in VRAM + TEXT_WORKING
    denoise = the largest transformer in VRAM
              + activations x (1 + ALLOCATOR_SLACK), activations = sequence tokens x batch
                x CFG batch x ACTIVATION_BYTES x (width / 1536) ^ ACTIVATION_EXPONENT
    decode  = the VAE in VRAM + (DECODE_FIXED + pixels x (DECODE_CACHE + frames x 6 B)) x (1 + slack)
    RAM     = every component resident
              + (PROCESS_RAM + PIN_SLACK x pinned + frames in fp32 and uint8) x luck

Where it differs from the estimator, on purpose and for a reason: activations follow a power law in
width fitted to the five H100 runs (the estimator: a sum over width and MLP width), and count the
text tokens of joint-attention models and LTX's batched guidance; the VAE sits in VRAM in the half
type the runner loads it in; int8 leaves a share of the weights in bf16; a budgeted profile holds
what mmgp's code holds (its budget, or the modules outside the blocks and the blocks in flight); the
decode peak grows with frames and was fitted to the tiled Wan VAE. A job's luck (JobNoise.vram,
.ram) multiplies only the working bytes: the weights are known bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Protocol

from models.catalogue import DTYPE_BYTES, Component, ModelPreset, Role, get_model
from models.memory import JobSize, latent_tokens
from models.profiles import MIB, Profile, ProfileSpec

GIB = 1024**3
# Fitted to the H100 calibration (tests/gpu/calibrate.py: Wan 2.1 1.3B and 14B, bf16, sdpa, one
# denoising forward at 14k-76k tokens): bytes a token = 48,830 x (width / 1536) ^ 0.699, within
# 0.3% of all five runs. The estimator's form fits the same five; the two part away from them.
ACTIVATION_BYTES = 48_830
ACTIVATION_EXPONENT = 0.699
# Models whose transformer attends over image and text tokens jointly (MMDiT-style), and how many
# text tokens their pipeline sends (diffusers' max_sequence_length; Qwen's prompts are not padded).
JOINT_TEXT_TOKENS = {"flux": 512, "hunyuan": 256, "qwen-image": 256}
BATCHED_GUIDANCE = frozenset({"ltx"})  # diffusers' LTX pipeline runs cond and uncond as one batch
# Tiled Wan VAE decode over its weights, fitted to the H100 (bf16, 81 frames): 0.95 GiB at 832x480
# and 1.96 at 1280x720. Per pixel of a frame: a cache of decoder features, plus the decoded clip
# itself in bf16 (3 channels x 2 bytes a frame). Other VAEs are not measured: assumed the same.
DECODE_FIXED = int(0.178 * GIB)
DECODE_CACHE = 1591
DECODED_BYTES_PER_FRAME_PIXEL = 6
# Not measured; the truth's own assumptions (see docs/simulator-truth.md).
CONTEXT = int(0.55 * GIB)  # CUDA context and kernels outside torch's allocator
ALLOCATOR_SLACK = 0.10  # reserved over allocated at the working peak (caching allocator blocks)
TEXT_WORKING = int(0.25 * GIB)  # a T5/LLM forward over a few hundred tokens
OUTSIDE_BLOCKS = 0.02  # share of a model outside its repeated blocks (embeddings, head: Wan's ~2%)
INT8_KEPT = OUTSIDE_BLOCKS  # mmgp's _quantize leaves the modules outside the blocks in bf16
ENCODER_BLOCKS = 24  # blocks a budgeted non-transformer streams in (T5-XXL has 24)
PROCESS_RAM = int(3.0 * GIB)  # torch, CUDA libraries, diffusers and the Python heap
# mmgp packs pinned weights into tensors of up to 256 MB and torch's pinned allocator rounds each
# up to a power of two: the tails of the chunks (mmgp's own docstring says 50%, its code far less).
PIN_SLACK = 0.2


class MemoryLuck(Protocol):
    """A job's luck on its working bytes (sim.truth's JobNoise is one), as factors."""

    @property
    def vram(self) -> float: ...

    @property
    def ram(self) -> float: ...


@dataclass(frozen=True, slots=True)
class MemoryPeaks:
    """A job's memory before its luck: weights and working bytes of each VRAM phase, and RAM."""

    # (weights in VRAM, working bytes) of the text, denoise and decode phases
    phases: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    ram_weights: int
    ram_working: int

    def lucky(self, noise: MemoryLuck) -> tuple[int, int]:
        """(peak VRAM, peak RAM) in bytes of a job with this luck."""
        # Spelled out: sim.bounds calls this for every job and kind of card (3x faster than a loop).
        (text, text_work), (denoise, denoise_work), (decode, decode_work) = self.phases
        luck = noise.vram
        vram = CONTEXT + max(
            text + text_work * luck, denoise + denoise_work * luck, decode + decode_work * luck
        )
        return int(vram), int(self.ram_weights + self.ram_working * noise.ram)


def true_memory(model_id: str, profile: Profile, size: JobSize, noise: MemoryLuck) -> tuple[int, int]:
    """(peak VRAM, peak RAM) in bytes of the job under `profile`, with its luck."""
    return memory_peaks(model_id, profile, size).lucky(noise)


@cache
def memory_peaks(model_id: str, profile: Profile, size: JobSize) -> MemoryPeaks:
    """The job's peaks before its luck (the truth's form, see the module docstring)."""
    preset, spec = get_model(model_id), profile.spec
    slack = 1 + ALLOCATOR_SLACK
    encoders = preset.component(Role.TEXT_ENCODER) + preset.component(Role.IMAGE_ENCODER)
    phases = (
        (max((_in_vram(preset, c, spec) for c in encoders), default=0), TEXT_WORKING),
        (
            max((_in_vram(preset, c, spec) for c in preset.component(Role.TRANSFORMER)), default=0),
            int(activation_bytes(preset, size) * slack),
        ),
        (sum(_in_vram(preset, c, spec) for c in preset.component(Role.VAE)), int(decode_bytes(size) * slack)),
    )
    weights = sum(resident_bytes(c, spec) for c in preset.components)
    pinned = sum(resident_bytes(c, spec) for c in preset.components if _pinned(c, spec))
    frames = size.frames * size.width * size.height * 3 * (4 + 1) * size.batch  # fp32 and uint8
    return MemoryPeaks(phases, weights, PROCESS_RAM + int(PIN_SLACK * pinned) + frames)


def activation_bytes(preset: ModelPreset, size: JobSize) -> int:
    """Peak activations of one denoising forward, allocated (no slack): the calibrated quantity."""
    tokens = latent_tokens(preset, size) + JOINT_TEXT_TOKENS.get(preset.family, 0)
    guidance = 2 if preset.family in BATCHED_GUIDANCE and preset.defaults.guidance_scale > 1.0 else 1
    per_token = ACTIVATION_BYTES * (preset.latent.hidden / 1536) ** ACTIVATION_EXPONENT
    return int(tokens * size.batch * guidance * per_token)


def decode_bytes(size: JobSize) -> int:
    """Peak of a tiled VAE decode over its weights, allocated (no slack): the calibrated quantity."""
    per_pixel = DECODE_CACHE + DECODED_BYTES_PER_FRAME_PIXEL * size.frames
    return DECODE_FIXED + size.width * size.height * size.batch * per_pixel


def resident_bytes(component: Component, spec: ProfileSpec) -> int:
    """Bytes a component really takes once loaded: the runner loads every component in the card's
    half type (the VAE too); int8 leaves a share of the parameters in bf16."""
    params = component.params
    if spec.quantize and (component.role is Role.TRANSFORMER or component.quantizable):
        return int(params * (1 + INT8_KEPT))
    return int(params * min(DTYPE_BYTES[component.dtype], 2))


def _in_vram(preset: ModelPreset, component: Component, spec: ProfileSpec) -> int:
    # mmgp 3.8.2 (offload.tune_preloading): a budgeted model keeps its modules outside the blocks, the
    # block computing and, with async transfers, the next one, and preloads blocks up to its budget;
    # without async transfers it preloads none.
    size = resident_bytes(component, spec)
    transformer = component.role is Role.TRANSFORMER
    budget = spec.transformer_budget_mib if transformer else spec.other_budget_mib
    if budget is None:
        return size
    base = size * OUTSIDE_BLOCKS
    block = (size - base) / (preset.latent.layers if transformer else ENCODER_BLOCKS)
    if not spec.async_transfers:
        return int(base + block)
    return min(size, int(max(budget * MIB, base + 2 * block)))


def _pinned(component: Component, spec: ProfileSpec) -> bool:
    return spec.pin_all or (spec.pin_transformer and component.role is Role.TRANSFORMER)
