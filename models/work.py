"""The work of one job: which model renders what size, how many frames and steps, and outputs per call.

`models.settings.resolve` makes it once from a settings object; every layer after that holds this
record (the stored job, the queue, the scheduler's snapshots and learning, the task an agent gets,
the simulator's trace), never its fields copied one by one. What a job is grows here, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from operator import attrgetter

from models.memory import JobSize
from models.step_cache import StepSkip


@dataclass(frozen=True, slots=True)
class WorkSize:
    """What one job renders. Jobs of equal work cost the same: `key` (its fields as a plain tuple) is
    what the scheduler prices a job under."""

    model_id: str  # catalogue id
    width: int
    height: int
    frames: int  # 1 for an image
    steps: int
    batch: int = 1  # outputs per pipeline call
    step_skip: StepSkip | None = None  # WanGP's step skipping: fewer steps run than `steps`
    key: tuple[object, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built once: a tuple hashes and compares in C, where the record's own __hash__ and __eq__
        # are Python calls, three times slower over a 100,000-job queue each round.
        object.__setattr__(self, "key", _identity(self))

    @property
    def size(self) -> JobSize:
        """The part the memory estimate reads (the model and steps come separately)."""
        return JobSize(self.width, self.height, self.frames, self.batch)

    def dimensions(self) -> str:
        """ "1280x720x81" ("1024x1024" for an image), then " (batch 4)" when more than one."""
        shape = f"{self.width}x{self.height}" + (f"x{self.frames}" if self.frames > 1 else "")
        return shape + (f" (batch {self.batch})" if self.batch > 1 else "")

    def describe(self) -> str:
        """ "wan2.1-t2v-14b at 1280x720x81, 30 steps" (then " with MagCache x2" when it skips
        steps): the work in words a user reads."""
        skipping = f" with {self.step_skip.describe()}" if self.step_skip else ""
        return f"{self.model_id} at {self.dimensions()}, {self.steps} steps{skipping}"


_identity = attrgetter(*(f.name for f in fields(WorkSize) if f.compare))  # every field but `key`
