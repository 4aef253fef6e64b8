"""Per-round memo of what a kind of job costs on each class of agent.

Thousands of pending jobs share a few kinds of work (models.work.WorkSize); the profile that fits each agent
class and the render seconds there are worked out once per shape per round, so a job costs one dict
lookup. Per round, because the learned speed and memory corrections change between rounds. A job
that forces a profile or an attention kernel (models.overrides) is a shape of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.catalogue import ModelPreset
from models.overrides import Overrides
from models.profiles import Profile
from models.work import WorkSize
from scheduler.catalogue_lookup import CatalogueLookup
from scheduler.cost import render_flops
from scheduler.feasibility import (
    arch_problem,
    attention_problem,
    describe_job,
    plugin_problem,
    pool_refusal,
)
from scheduler.snapshot import PendingJob
from scheduler.wanfarm.learning import Headroom, MemoryModel, SpeedModel
from scheduler.wanfarm.pool_index import AgentClass


@dataclass(frozen=True)
class ClassOption:
    """How a job shape runs on one agent class: the profile that fits and the render seconds."""

    class_index: int
    profile: Profile
    render_s: float


@dataclass(frozen=True)
class JobShape:
    """What every job of one shape costs: options fastest first, and its mean render seconds."""

    preset: ModelPreset
    weight_bytes: int
    options: tuple[ClassOption, ...]
    mean_render_s: float  # over the classes that can run it; 0 when none can
    refusal: str | None  # why no agent can run it, when `options` is empty


class RoundShapes:
    """Shapes met this round, built on first use and dropped with the round."""

    def __init__(
        self,
        classes: list[AgentClass],
        catalogue: CatalogueLookup,
        speed: SpeedModel,
        memory: MemoryModel,
    ) -> None:
        self.classes = classes
        self.speed = speed
        self.memory = memory
        # Public for the queue tail's loop, which looks up 100k jobs a round and skips the call.
        self.known: dict[tuple[object, ...], JobShape | None] = {}  # keyed by shape_key
        self._catalogue = catalogue

    def shape(self, job: PendingJob) -> JobShape | None:
        """The job's shape; None when its model is not in the catalogue."""
        key = shape_key(job)
        try:
            return self.known[key]
        except KeyError:
            shape = self.known[key] = self._build(job.work, job.overrides)
            return shape

    def _build(self, work: WorkSize, forced: Overrides | None) -> JobShape | None:
        preset = self._catalogue.preset(work.model_id)
        if preset is None:
            return None
        # Each class at the widest headroom under which it fits, down to SAFE; BARE only where no
        # class fits at SAFE.
        wide = self._options(preset, work, forced, Headroom.WIDE)
        taken = {option.class_index for option in wide}
        options = wide + [
            option
            for option in self._options(preset, work, forced, Headroom.SAFE)
            if option.class_index not in taken
        ]
        if not options:
            options = self._options(preset, work, forced, Headroom.BARE)
        options.sort(key=lambda option: (option.render_s, option.class_index))
        mean = sum(o.render_s for o in options) / len(options) if options else 0.0
        refusal = None if options else self._refusal(preset, work, forced)
        return JobShape(preset, preset.weight_bytes, tuple(options), mean, refusal)

    def _options(
        self, preset: ModelPreset, work: WorkSize, forced: Overrides | None, headroom: Headroom
    ) -> list[ClassOption]:
        size = work.size
        flops = render_flops(preset, work)
        options = []
        for index, agent_class in enumerate(self.classes):
            sample = agent_class.sample
            if arch_problem(preset, sample) is not None or attention_problem(forced, sample) is not None:
                continue
            if plugin_problem(forced, sample) is not None:
                continue
            vram, ram = agent_class.vram_total, agent_class.ram_total
            if forced is None or forced.profile is None:
                profile = self.memory.choose_profile(preset, size, vram, ram, headroom)
            elif self.memory.fits_size(preset, size, vram, ram, forced.profile, headroom):
                profile = forced.profile
            else:
                continue
            if profile is None:
                continue
            seconds = self.speed.render_seconds(
                flops, preset.id, agent_class.gpu_name, agent_class.half_tflops, profile
            )
            options.append(ClassOption(index, profile, seconds))
        return options

    def _refusal(self, preset: ModelPreset, work: WorkSize, forced: Overrides | None) -> str:
        # One agent of each class says as much as the whole pool, at a fraction of the cost.
        refusal = pool_refusal(preset, work, [c.sample for c in self.classes], forced)
        if refusal is not None:
            return f"no agent can run it: {refusal}"
        factor = self.memory.factor(preset.id)
        return (
            f"no agent can run it: {describe_job(preset, work)} fits the largest agents only at its "
            f"catalogue memory estimate, not at the x{factor:.2f} its model was measured to need"
        )


def shape_key(job: PendingJob) -> tuple[object, ...]:
    """What jobs of one shape share: the work, and what the job forces when it forces something."""
    return job.work.key if job.overrides is None else (job.work.key, job.overrides)
