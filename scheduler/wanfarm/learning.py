"""What the wanfarm policy learns from finished jobs, in `observe` only: render speed per (model, GPU)
and a memory factor per (model, profile, size).

Speed: the median of observed seconds per (FLOP x profile slowdown) for the pair (before it has run,
scheduler.cost's prior times the model's learned / prior elsewhere), plus the pair's median time
around a render (hand-over, encoding, upload), so an ETA is when the job ends. Memory: the estimate
x the learned factor (>= 1, raised by peaks and OOMs) x SAFETY_MARGIN must fit VRAM and RAM;
UNMEASURED_MARGIN until a job of the key has finished, per agent class as it fits (Headroom).
Why: docs/scheduler.md, "Learning".
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass
from enum import IntEnum

from models.catalogue import ModelPreset
from models.gpus import UnknownGpu, find_gpu
from models.memory import JobSize, MemoryNeed
from models.profiles import SPEED_ORDER, Profile
from models.work import WorkSize
from scheduler.catalogue_lookup import CatalogueLookup
from scheduler.cost import MIN_TFLOPS, PROFILE_SLOWDOWN, UTILISATION, render_flops
from scheduler.snapshot import AgentView, Observation

SPEED_WINDOW = 32  # recent observations per (model, GPU); the median of these is the estimate
SAFETY_MARGIN = 1.1  # headroom over the learned need: the estimator is a formula, not a measurement
OOM_RAISE = 1.2  # an out-of-memory failure proves the need is larger than we thought, by an unknown amount
UNMEASURED_MARGIN = 1.25  # headroom for a (model, profile, size) no finished job has measured yet


@dataclass(frozen=True)
class SpeedKey:
    model_id: str
    gpu_name: str


class SpeedModel:
    """Seconds of rendering per (model, GPU), learned online from finished jobs."""

    def __init__(self) -> None:
        self._samples: dict[SpeedKey, deque[float]] = {}
        self._seconds_per_flop: dict[SpeedKey, float] = {}  # the median of _samples, kept current
        self._over_prior: dict[str, dict[str, float]] = {}  # model -> GPU -> learned / prior
        self._model_factor: dict[str, float] = {}  # model -> median of its _over_prior values
        self._overheads: dict[SpeedKey, deque[float]] = {}  # finishing seconds around the render
        self._overhead: dict[SpeedKey, float] = {}  # the median of _overheads, kept current

    def observe(self, preset: ModelPreset, observation: Observation) -> None:
        """Record a successful job's render time; failed (OOM) runs say nothing about speed."""
        if observation.out_of_memory or observation.render_seconds <= 0:
            return
        flops = render_flops(preset, observation.work) * PROFILE_SLOWDOWN[observation.profile]
        if flops <= 0:
            return
        key = SpeedKey(preset.id, observation.gpu_name)
        samples = self._samples.setdefault(key, deque(maxlen=SPEED_WINDOW))
        samples.append(observation.render_seconds / flops)
        learned = self._seconds_per_flop[key] = statistics.median(samples)
        if observation.wall_seconds is not None:
            around = observation.wall_seconds - observation.render_seconds - observation.load_seconds
            overheads = self._overheads.setdefault(key, deque(maxlen=SPEED_WINDOW))
            overheads.append(max(0.0, around))
            self._overhead[key] = statistics.median(overheads)
        try:
            half_tflops = find_gpu(observation.gpu_name).half_tflops
        except UnknownGpu:
            return  # no prior to compare with: the pair's own estimate is all it teaches
        ratios = self._over_prior.setdefault(preset.id, {})
        ratios[observation.gpu_name] = learned / prior_seconds_per_flop(half_tflops)
        self._model_factor[preset.id] = statistics.median(ratios.values())

    def observations(self, model_id: str, gpu_name: str) -> int:
        """How many finished jobs the (model, GPU) estimate rests on (up to SPEED_WINDOW)."""
        return len(self._samples.get(SpeedKey(model_id, gpu_name), ()))

    def predict_render_seconds(
        self, preset: ModelPreset, work: WorkSize, agent: AgentView, profile: Profile
    ) -> float:
        """Seconds of the work on the agent under the profile until it ends, weights loading excluded."""
        return self.render_seconds(
            render_flops(preset, work), preset.id, agent.gpu_name, agent.half_tflops, profile
        )

    def render_seconds(
        self, flops: float, model_id: str, gpu_name: str, half_tflops: float, profile: Profile
    ) -> float:
        """The same from a precomputed FLOPs count: the policy's hot path memoises the FLOPs."""
        key = SpeedKey(model_id, gpu_name)
        learned = self._seconds_per_flop.get(key)
        if learned is not None:
            per_flop = learned
        else:
            per_flop = prior_seconds_per_flop(half_tflops) * self._model_factor.get(model_id, 1.0)
        return flops * PROFILE_SLOWDOWN[profile] * per_flop + self._overhead.get(key, 0.0)


def prior_seconds_per_flop(half_tflops: float) -> float:
    """scheduler.cost's throughput guess for a card, before any job on it has finished."""
    return 1.0 / (max(half_tflops, MIN_TFLOPS) * 1e12 * UTILISATION)


class Headroom(IntEnum):
    """Memory kept over a job's learned need, widest first. Each class of agent is taken at the widest
    of WIDE and SAFE it fits, BARE only where no class fits SAFE: a margin prefers a safer profile on
    a card, never refuses, nor exiles a job from a card that fits it at SAFE (job_shapes)."""

    WIDE = 0  # UNMEASURED_MARGIN until a job of the (model, profile, size) has finished, then SAFETY_MARGIN
    SAFE = 1  # SAFETY_MARGIN
    BARE = 2  # the learned need alone (the catalogue's estimate, by which the job was accepted, at first)


class MemoryModel:
    """VRAM and RAM needs: the catalogue estimate, corrected by observed peaks and OOMs.

    The estimator's error depends on the profile (which weights sit in VRAM) and the size (how much
    of the peak is activations), so a correction is learned per (model, profile, size); a key not
    yet measured borrows the largest correction of its model and gets the wider UNMEASURED_MARGIN.
    """

    def __init__(
        self,
        catalogue: CatalogueLookup | None = None,
        margin: float = SAFETY_MARGIN,
        unmeasured_margin: float = UNMEASURED_MARGIN,
    ) -> None:
        self.catalogue = catalogue if catalogue is not None else CatalogueLookup()
        self.margin = margin
        self.unmeasured_margin = max(margin, unmeasured_margin)
        self._factor: dict[MemoryKey, float] = {}  # measured keys
        self._model_factor: dict[str, float] = {}  # model -> the largest factor of its keys

    def observe(self, preset: ModelPreset, observation: Observation) -> None:
        """Raise the key's factor to an observed peak over the estimate, or by OOM_RAISE on OOM."""
        key = MemoryKey(preset.id, observation.profile, observation.work.size)
        factor = self._factor.get(key, self.factor(preset.id))
        if observation.out_of_memory:
            factor *= OOM_RAISE
        elif observation.peak_vram_bytes is None:
            return
        else:
            need = self.need(preset, observation.profile, observation.work.size)
            if need.vram_bytes <= 0:
                return
            factor = max(self._factor.get(key, 1.0), observation.peak_vram_bytes / need.vram_bytes)
        self._factor[key] = factor
        self._model_factor[preset.id] = max(self.factor(preset.id), factor)

    def factor(self, model_id: str) -> float:
        """The model's largest learned multiplier of its estimate; 1.0 until something says otherwise."""
        return self._model_factor.get(model_id, 1.0)

    def scale(
        self, model_id: str, profile: Profile, size: JobSize, headroom: Headroom = Headroom.WIDE
    ) -> float:
        """What the estimate is multiplied by before it must fit: the key's learned factor (else the
        model's largest) x the margin `headroom` asks for."""
        learned = self._factor.get(MemoryKey(model_id, profile, size))
        factor = self.factor(model_id) if learned is None else learned
        if headroom is Headroom.BARE:
            return factor
        if headroom is Headroom.WIDE and learned is None:
            return factor * self.unmeasured_margin
        return factor * self.margin

    def need(self, preset: ModelPreset, profile: Profile, size: JobSize) -> MemoryNeed:
        """models.memory.estimate, through the policy's cached catalogue lookup."""
        return self.catalogue.need(preset, profile, size)

    def fits(
        self,
        preset: ModelPreset,
        work: WorkSize,
        agent: AgentView,
        profile: Profile,
        headroom: Headroom = Headroom.SAFE,
    ) -> bool:
        """Whether the work's learned need, with the headroom's margin, fits the card and the node."""
        return self.fits_size(preset, work.size, agent.vram_total, agent.ram_total, profile, headroom)

    def fits_size(
        self,
        preset: ModelPreset,
        size: JobSize,
        vram: int,
        ram: int,
        profile: Profile,
        headroom: Headroom = Headroom.WIDE,
    ) -> bool:
        """Whether the need at `scale` fits the card and the node."""
        scale = self.scale(preset.id, profile, size, headroom)
        need = self.need(preset, profile, size)
        return need.vram_bytes * scale <= vram and need.ram_bytes * scale <= ram

    def choose_profile(
        self, preset: ModelPreset, size: JobSize, vram: int, ram: int, headroom: Headroom = Headroom.WIDE
    ) -> Profile | None:
        """The fastest profile whose learned need fits; architecture is the caller's to check."""
        for profile in SPEED_ORDER:
            if self.fits_size(preset, size, vram, ram, profile, headroom):
                return profile
        return None


@dataclass(frozen=True)
class MemoryKey:
    model_id: str
    profile: Profile
    size: JobSize
