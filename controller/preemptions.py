"""Preemption's mechanism: write the policy's preemptions, ask the agents, keep what the views need.

The policy decides (scheduler.preemption); `send_preemptions` writes each one to the store first
(the store is the truth), then asks the agents in one batch call. An agent stops the attempt at its
next step boundary and reports PREEMPTED; the dispatcher then queues the job again with its progress,
not charged (JobStore.preempted). `ReportedSteps` keeps the denoising step each running attempt last
reported, as coarsely as the views need it (scheduler.preemption.PROGRESS_GRAIN), and shows it only
where a preemption could use it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from controller.jobs import JobRecord
from controller.ray_cluster import TaskPreempt
from controller.registry import AgentEntry, AgentRegistry
from controller.store import JobStore, PreemptRequest
from models.progress import Phase
from scheduler.preemption import priority_class, progress_moved
from scheduler.snapshot import Preemption

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportedStep:
    """A running attempt's denoising step as last shown to the policy, and when it was reported."""

    step: int
    total: int
    at: float


class ReportedSteps:
    """The denoising step of each running attempt, renewed only once it moved by PROGRESS_GRAIN of
    the job: a view per step would make every busy agent look changed each round."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], ReportedStep] = {}

    def note(self, job_id: str, attempt: int, step: int, total: int, phase: str, now: float) -> None:
        if phase != Phase.DENOISING.value or total <= 0:
            return
        key = (job_id, attempt)
        shown = self._steps.get(key)
        if shown is None or shown.total != total or progress_moved(shown.step, step, total):
            self._steps[key] = ReportedStep(step, total, now)

    def shown(self, job: JobRecord, top_priority: int) -> ReportedStep | None:
        """The step a view of the job's agent shows: none unless a queued job (`top_priority`, the
        queue's highest) is of a higher class and could preempt it; the views of other busy agents
        stay as they are while their jobs advance."""
        if priority_class(job.priority) >= priority_class(top_priority):
            return None
        return self._steps.get((job.id, job.attempts))

    def keep(self, running: Iterable[JobRecord]) -> None:
        """Forget the attempts that are no longer running."""
        alive = {(job.id, job.attempts) for job in running}
        self._steps = {key: step for key, step in self._steps.items() if key in alive}


def send_preemptions(
    store: JobStore,
    registry: AgentRegistry,
    entries: Mapping[str, AgentEntry],
    running: Sequence[JobRecord],
    preemptions: Sequence[Preemption],
    now: float,
) -> list[JobRecord]:
    """Write each preemption of a job still running on its agent, then ask those agents to stop them,
    all at once; the attempts asked. An agent lost meanwhile is found by the next events read."""
    by_id = {job.id: job for job in running}
    requests = []
    for preemption in preemptions:
        job = by_id.get(preemption.job_id)
        if job is None or job.agent_id != preemption.agent_id or preemption.agent_id not in entries:
            continue  # it ended, or moved, since the snapshot
        requests.append(
            PreemptRequest(
                job.id, job.attempts, preemption.agent_id, preemption.for_job_id, preemption.reason
            )
        )
    marked = store.request_preemptions(requests, now)
    asks = [TaskPreempt(entries[job.agent_id or ""].handle, job.id, job.attempts) for job in marked]
    answers = registry.cluster.preempt_tasks(asks)
    for job_id, error in answers.lost.items():
        log.warning("preemption of %s not delivered: %s", job_id, error)
    for job in marked:
        log.info("preempting %s on %s", job.id, job.agent_id)
    return marked
