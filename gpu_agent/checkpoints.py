"""A job's checkpoints in object storage: one object per generation (or long-video window), replaced
at each save, read by the next attempt on whichever agent runs it (models.checkpoint)."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpu_agent.storage import ObjectMissing, ObjectStore, checkpoints_prefix

if TYPE_CHECKING:  # the controller imports the agent's modules, which must not load torch
    from models.checkpoint import StepState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointPolicy:
    """When a run saves its state: every `every_steps` steps when set, else every `every_seconds` of
    denoising, and never so often that writing costs more than `max_share` of the time denoised
    since the last one (a slow store spaces them out)."""

    every_steps: int | None = None
    every_seconds: float = 60.0
    max_share: float = 0.02

    def due(self, steps_since: int, seconds_since: float, last_cost_s: float) -> bool:
        if self.every_steps is not None:
            return steps_since >= self.every_steps
        return seconds_since >= max(self.every_seconds, last_cost_s / self.max_share)


@dataclass
class CheckpointCost:
    """What one attempt's checkpoints cost, all its generations together."""

    saves: int = 0
    bytes: int = 0
    seconds: float = 0.0


def checkpoint_key(job_id: str, part: str) -> str:
    return f"{checkpoints_prefix(job_id)}{part}.ckpt"


def work_fingerprint(settings: dict[str, Any], part: str) -> str:
    """The work a checkpoint belongs to: the job's settings as submitted and which part of it."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{canonical}|{part}".encode()).hexdigest()[:32]


class StoredCheckpoints:
    """models.checkpoint.Checkpoints over object storage for one part (`gen0`, `window3`) of a job.

    `stop_requested` is asked at each boundary: a preemption saves at the next one, due or not.
    """

    def __init__(
        self,
        store: ObjectStore,
        job_id: str,
        part: str,
        fingerprint: str,
        policy: CheckpointPolicy,
        cost: CheckpointCost,
        stop_requested: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.key = checkpoint_key(job_id, part)
        self.fingerprint = fingerprint
        self.policy = policy
        self.cost = cost
        self.stop_requested = stop_requested
        self.clock = clock
        self._since = clock()  # of denoising since the last save (or the start)
        self._steps_at_save = 0
        self._last_cost_s = 0.0

    def resume(self) -> StepState | None:
        from models.checkpoint import StepState

        with tempfile.TemporaryDirectory(prefix="wanfarm-checkpoint-") as folder:
            local = Path(folder) / "state.ckpt"
            try:
                self.store.get_file(self.key, local)
            except ObjectMissing:
                return None
            try:
                state = StepState.decode(local.read_bytes())
            except ValueError as error:  # never resumed from: the run starts over
                log.warning("checkpoint %s unreadable, starting over: %s", self.key, error)
                return None
        self._steps_at_save = state.step
        return state

    def due(self, step: int, total: int) -> bool:
        if self.stop_requested():
            return True
        return self.policy.due(step - self._steps_at_save, self.clock() - self._since, self._last_cost_s)

    def save(self, state: StepState) -> None:
        started = self.clock()
        data = state.encode()
        with tempfile.TemporaryDirectory(prefix="wanfarm-checkpoint-") as folder:
            local = Path(folder) / "state.ckpt"
            local.write_bytes(data)
            # One object replaced whole: a reader gets the last state or the one before, never half.
            self.store.put_file(self.key, local, "application/octet-stream")
        ended = self.clock()
        self._last_cost_s = ended - started
        self._since = ended
        self._steps_at_save = state.step
        self.cost.saves += 1
        self.cost.bytes += len(data)
        self.cost.seconds += self._last_cost_s
