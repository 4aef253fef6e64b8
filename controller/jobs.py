"""Jobs as the controller keeps them: states, records and events (the store persists these)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from models.loras import LoraNeed
from models.profiles import Profile
from models.work import WorkSize


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED})


@dataclass(frozen=True)
class JobProgress:
    step: int = 0
    total: int = 0
    phase: str = ""


@dataclass(frozen=True)
class NewJob:
    """A validated submission, ready to be stored: settings with the seed already fixed."""

    owner: str
    priority: int
    settings: dict[str, Any]
    work: WorkSize  # what the settings resolved to at submit: what the job is placed as
    max_attempts: int = 3
    loras: tuple[LoraNeed, ...] = ()  # its LoRAs as the scheduler weighs them
    plugins: tuple[str, ...] = ()  # post-processors it needs that do not ship with WanFarm


@dataclass(frozen=True)
class JobRecord:
    """A job as stored, after its last written transition."""

    id: str
    owner: str
    state: JobState
    priority: int
    settings: dict[str, Any]
    work: WorkSize
    created_at: float
    updated_at: float
    attempts: int  # attempts started so far
    max_attempts: int  # how many attempts may be charged before the job fails
    agent_id: str | None = None  # the agent of the current (or last) attempt
    profile: Profile | None = None  # memory profile of the current (or last) attempt; None before one
    started_at: float | None = None
    finished_at: float | None = None
    eta: float | None = None  # estimated finish (clock seconds), from the scheduler
    wait_reason: str | None = None  # why a queued job is not running yet
    progress: JobProgress = JobProgress()
    outputs: tuple[str, ...] = ()  # object-storage keys
    error: str | None = None
    attempt_errors: tuple[str, ...] = ()  # one line per failed attempt
    avoid_agents: tuple[str, ...] = ()
    cancel_requested: bool = False
    uncharged_attempts: int = 0  # attempts lost to the farm's own restart: not held against the job
    plugins: tuple[str, ...] = ()  # post-processors it needs that do not ship with WanFarm
    preemptions: int = 0  # attempts stopped for a job of a higher priority (not charged)
    preempt_requested: bool = False  # the running attempt was asked to stop for one
    submit_eta: float | None = None  # the first ETA a placement gave it (clock seconds); None before

    @property
    def charged_attempts(self) -> int:
        return self.attempts - self.uncharged_attempts

    @property
    def model_id(self) -> str:
        return self.work.model_id

    def running_profile(self) -> Profile:
        """The profile its attempt was placed under; an attempt started without one is a bug, never
        a guess (a wrong profile would teach the scheduler wrong speeds and memory)."""
        if self.profile is None:
            raise ValueError(
                f"job {self.id} attempt {self.attempts} is {self.state} without a memory profile: "
                "every attempt is stored with the profile it was placed under"
            )
        return self.profile


@dataclass(frozen=True)
class IdempotencyKey:
    """A client's key for one submission: a retry with the same key gets the first result."""

    owner: str
    key: str
    fingerprint: str  # digest of the request; the same key with another request is refused


@dataclass(frozen=True)
class JobEvent:
    """One entry of a job's history: a transition, progress, an output or an error."""

    job_id: str
    seq: int  # increasing per store, so a reader can ask for what came after
    at: float
    kind: str  # "state", "progress", "output", "error"
    data: dict[str, Any] = field(default_factory=dict)
