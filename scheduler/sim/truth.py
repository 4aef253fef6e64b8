"""The simulator's ground truth: how long a job really takes on a card, and each job's luck. Deliberately
not scheduler.cost nor models.memory: a policy is judged against a world it does not share its prior
with. How much memory a job really needs is in scheduler.sim.memory_truth.

    render  = OVERHEAD + (passes x denoise FLOPs x QUANT_SLOWDOWN + decode FLOPs) / card speed,
              where a profile that streams the transformer from RAM instead waits, per step and
              pass, for its int8/half bytes over PCIe (overlapped when transfers are async)
    card    = half_tflops x efficiency (drawn per card, U(0.3, 0.5)) / 2 on a slow node (5%)
    job     = render x lognormal(0, 0.1), one draw per job (prompt, sampler, thermal luck)
    memory  = scheduler.sim.memory_truth under the profile the policy chose, its working bytes (not
              the weights) x the job's luck: VRAM x lognormal(0, 0.08) per job x lognormal(0, 0.1)
              per model (drawn once per seed: the estimator errs one way for a model), RAM x
              lognormal(0, 0.08); above the card (or node RAM) the attempt runs out of memory
    load    = 0 when hot, weight bytes / disk speed when cached, else the download over the
              node's link (queued behind the node's other downloads)

Guidance doubles the denoising passes, except for guidance-distilled models (Flux) and those run
without it (scale <= 1). Noise draws are keyed by the seed and the job's place in the trace, so
every policy of one run faces the same jobs and cards; a model's memory bias by the seed and its id.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache

from models.catalogue import ModelPreset, Role, get_model
from models.memory import JobSize, latent_tokens
from models.profiles import Profile
from models.work import WorkSize
from scheduler.sim.memory_truth import resident_bytes

OVERHEAD_S = 2.0  # text encoding, scheduler set-up and writing the file
VAE_FLOPS_PER_PIXEL = 2.0e7  # decoder work per output pixel (Wan's VAE decodes 81 frames in ~15 s)
QUANT_SLOWDOWN = 1.08  # int8 weights are dequantized on the fly by mmgp
PCIE_BYTES_PER_S = 12e9  # pinned host RAM to the card, PCIe 4 x16 in practice
UNPINNED_PCIE_BYTES_PER_S = 6e9
GUIDANCE_DISTILLED = frozenset({"flux"})


@dataclass(frozen=True)
class TruthConfig:
    """The knobs of the ground truth; `noise=False` makes every draw its mean, for exact tests."""

    noise: bool = True
    efficiency_low: float = 0.3
    efficiency_high: float = 0.5
    render_sigma: float = 0.1
    memory_sigma: float = 0.08  # a job's working VRAM and RAM (allocator state, prompt length)
    model_memory_sigma: float = 0.1  # a model's working VRAM, once per seed (what no one measured)
    slow_node_share: float = 0.05
    slow_node_factor: float = 2.0
    oom_render_share: float = 0.1  # an out-of-memory attempt dies this far into its render
    # A preempted attempt writes its denoising state at its next step boundary; the attempt that
    # resumes reads it back (and loads the weights again where they are not hot).
    checkpoint_write_s: float = 3.0
    checkpoint_read_s: float = 1.0

    @property
    def mean_efficiency(self) -> float:
        return (self.efficiency_low + self.efficiency_high) / 2


@dataclass(frozen=True, slots=True)
class JobNoise:
    """One job's luck, as factors on its render time and on the working bytes of its VRAM and RAM
    (its model's bias included in `vram`)."""

    render: float = 1.0
    vram: float = 1.0
    ram: float = 1.0


def job_noise(config: TruthConfig, seed: int, index: int, model_id: str) -> JobNoise:
    """The draws of the `index`-th job of the trace, of `model_id`: the same for every policy of a run."""
    if not config.noise:
        return JobNoise()
    rng = random.Random(seed * 1_000_003 + index)
    sigma = config.memory_sigma
    return JobNoise(
        rng.lognormvariate(0.0, config.render_sigma),
        rng.lognormvariate(0.0, sigma) * model_memory_bias(config, seed, model_id),
        rng.lognormvariate(0, sigma),
    )


@cache
def model_memory_bias(config: TruthConfig, seed: int, model_id: str) -> float:
    """How far the model's working VRAM is from the truth's form, drawn once per seed and model."""
    if not config.noise:
        return 1.0
    # A string seed is hashed with SHA-512, so the draw does not depend on PYTHONHASHSEED.
    return random.Random(f"{seed}/{model_id}").lognormvariate(0.0, config.model_memory_sigma)


def card_efficiency(config: TruthConfig, rng: random.Random) -> float:
    """The achieved share of a card's half-precision peak (one draw per card)."""
    if not config.noise:
        return config.mean_efficiency
    return rng.uniform(config.efficiency_low, config.efficiency_high)


def render_seconds(work: WorkSize, profile: Profile, flops_per_s: float) -> float:
    """Noise-free render time of a job on a card achieving `flops_per_s`, weights already loaded."""
    return render_phases(work, profile, flops_per_s).seconds(work.steps)


@dataclass(frozen=True)
class RenderPhases:
    """A render's seconds by phase: set-up before the first step, each denoising step, decoding after.
    Every attempt pays the set-up and the decoding; one resumed from a checkpoint skips only steps."""

    setup_s: float
    step_s: float
    decode_s: float

    def seconds(self, steps: int) -> float:
        return self.setup_s + steps * self.step_s + self.decode_s

    def scaled(self, factor: float) -> RenderPhases:
        return RenderPhases(self.setup_s * factor, self.step_s * factor, self.decode_s * factor)


def render_phases(work: WorkSize, profile: Profile, flops_per_s: float) -> RenderPhases:
    """`render_seconds` split into its phases (noise-free)."""
    cost = _cost(work.model_id, work.size, profile)
    step = cost.step_flops / flops_per_s
    if cost.transfer_s:
        # Streaming profiles move the transformer over PCIe once per pass and step; with async
        # transfers the copy overlaps compute, so the slower of the two sets the pace.
        step = max(step, cost.transfer_s) if cost.overlapped else step + cost.transfer_s
    return RenderPhases(OVERHEAD_S, step, cost.decode_flops / flops_per_s)


@dataclass(frozen=True)
class _Cost:
    step_flops: float  # one denoising step, all guidance passes
    decode_flops: float
    transfer_s: float  # PCIe seconds per step when the profile streams the transformer, else 0
    overlapped: bool


@cache
def _cost(model_id: str, size: JobSize, profile: Profile) -> _Cost:
    preset = get_model(model_id)
    passes = _passes(preset)
    spec = profile.spec
    step_flops = passes * _denoise_step_flops(preset, size) * (QUANT_SLOWDOWN if spec.quantize else 1.0)
    decode = VAE_FLOPS_PER_PIXEL * size.width * size.height * size.frames * size.batch
    transfer = 0.0
    if spec.transformer_budget_mib is not None:
        moved = passes * sum(resident_bytes(c, spec) for c in preset.component(Role.TRANSFORMER))
        transfer = moved / (PCIE_BYTES_PER_S if spec.pin_transformer else UNPINNED_PCIE_BYTES_PER_S)
    return _Cost(step_flops, decode, transfer, spec.async_transfers)


def _passes(preset: ModelPreset) -> int:
    if preset.family in GUIDANCE_DISTILLED or preset.defaults.guidance_scale <= 1.0:
        return 1
    return 2


def _denoise_step_flops(preset: ModelPreset, size: JobSize) -> float:
    # Two FLOPs per weight per token over ~12 h^2 weights a block, plus attention's QK^T and AV.
    tokens = latent_tokens(preset, size) * size.batch
    hidden = preset.latent.hidden
    per_layer = 24 * hidden**2 * tokens + 4 * tokens**2 * hidden
    return float(preset.latent.layers * per_layer)
