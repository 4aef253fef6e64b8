"""How far each job's attempts got, so that an attempt that ends can say how many steps it ran again
(those its job's earlier attempts ran past their last checkpoint) and how many a checkpoint spared.

Kept in the controller's memory from the agents' progress: a restarted controller counts from its
own start. A job's steps are its denoising progress as reported (a long video's over its windows).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Redone:
    redone: int  # steps run again
    resumed: int  # steps a checkpoint spared


@dataclass
class StepsReached:
    _running: dict[str, int] = field(default_factory=dict)  # job id -> furthest step of this attempt
    _before: dict[str, int] = field(default_factory=dict)  # job id -> furthest step of earlier ones

    def progress(self, job_id: str, step: int) -> None:
        self._running[job_id] = max(self._running.get(job_id, 0), step)

    def forget(self, job_id: str) -> None:
        """The job ended: nothing more to count for it."""
        self._running.pop(job_id, None)
        self._before.pop(job_id, None)

    def lost(self, job_id: str) -> None:
        """The attempt was lost with its agent (it reports nothing more); the job queues again."""
        self._before[job_id] = max(self._before.get(job_id, 0), self._running.pop(job_id, 0))

    def ended(self, job_id: str, resumed_from: int, going_on: bool) -> Redone:
        """The attempt ended, having resumed from `resumed_from` (0: from the start); `going_on`
        when the job queues again (preempted, retried elsewhere) rather than ending."""
        reached = self._running.pop(job_id, 0)
        before = self._before.pop(job_id, 0)
        if going_on:
            self._before[job_id] = max(before, reached)
        # Steps spared are read from the attempt itself: a restarted controller knows them too.
        return Redone(redone=max(0, before - resumed_from), resumed=resumed_from)
