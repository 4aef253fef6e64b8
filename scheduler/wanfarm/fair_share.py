"""Queue order for the wanfarm policy: priority with aging, a size penalty, then per-owner fair share.

A job's effective priority is its priority plus one point per AGING_STEP_S waited, so no job starves;
it queues as if submitted SIZE_SHARE of its expected render time later, so short jobs go first for a
bounded time. Among jobs of equal effective priority the owner with the least GPU time lately (a
decaying ledger, plus work running and work handed out earlier in this ordering) goes next; one
owner's jobs keep their virtual submit order. Figures: docs/scheduler.md, "Queue order".
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scheduler.snapshot import PendingJob

AGING_STEP_S = 60.0  # one priority point per minute waited: +10 per 10 minutes
SERVICE_HALF_LIFE_S = 3600.0  # GPU time an owner had an hour ago counts half
SIZE_SHARE = 0.5  # a job queues as if submitted this share of its expected render seconds later


@dataclass(frozen=True)
class QueueOrder:
    """Pending jobs in the order they are considered: `head` gets placed, `tail` only waits."""

    head: tuple[PendingJob, ...]
    tail: tuple[PendingJob, ...]


class ServiceLedger:
    """GPU-seconds granted per owner, each second's weight halving every SERVICE_HALF_LIFE_S."""

    def __init__(self, half_life_s: float = SERVICE_HALF_LIFE_S) -> None:
        self.half_life_s = half_life_s
        self._value: dict[str, float] = {}
        self._at: dict[str, float] = {}
        self._latest = 0.0  # time of the newest record; undated records are taken to be this recent

    def record(self, owner: str, seconds: float, at: float | None = None) -> None:
        """Add `seconds` of GPU time granted to `owner` at time `at`."""
        when = self._latest if at is None else at
        self._latest = max(self._latest, when)
        last = self._at.get(owner)
        if last is None:
            self._value[owner], self._at[owner] = seconds, when
        elif when >= last:
            self._value[owner] = self._value[owner] * self._decay(when - last) + seconds
            self._at[owner] = when
        else:
            self._value[owner] += seconds * self._decay(last - when)

    def service(self, owner: str, now: float) -> float:
        """The owner's decayed GPU-seconds as of `now`."""
        value = self._value.get(owner)
        if value is None:
            return 0.0
        return value * self._decay(max(0.0, now - self._at[owner]))

    def _decay(self, seconds: float) -> float:
        return math.pow(0.5, seconds / self.half_life_s)


def effective_priority(job: PendingJob, now: float) -> float:
    """Priority plus one point per AGING_STEP_S waited (a job from the future gets a little less)."""
    return standing(job.priority, job.submitted_at, now)


def standing(priority: int, submitted_at: float, now: float) -> float:
    """The effective priority of a job of `priority` submitted at `submitted_at`, queued or not."""
    return priority + (now - submitted_at) / AGING_STEP_S


def order_queue(
    pending: Sequence[PendingJob],
    now: float,
    service: Callable[[str], float],
    weight: Callable[[PendingJob], float],
    head_size: int,
    size_share: float = SIZE_SHARE,
) -> QueueOrder:
    """Order by effective priority less a size penalty, then fair share among owners, then submit time.

    `weight(job)` is the job's expected render seconds: it sets the size penalty (`size_share` of it,
    in seconds of later submission) and what an owner is charged for each job ordered. Jobs whose
    effective priority has the same whole part count as equal: among them the owner with the least
    `service(owner)` (before this round) plus `weight(job)` of the jobs already ordered goes next.
    Only the first `head_size` jobs are merged so (a heap operation a job); the tail keeps the plain
    order.
    """
    ranked, keys = _by_virtual_submit_time(pending, weight, size_share)

    def band(virtual: float) -> int:
        # Whole effective priority, negated so it grows along `ranked`.
        return -math.floor((now - virtual) / AGING_STEP_S)

    head: list[PendingJob] = []
    granted: dict[str, float] = {}
    start = 0
    while start < len(ranked) and len(head) < head_size:
        end = bisect_right(keys, band(keys[start]), lo=start, key=band)
        taken = _merge_owners(ranked[start:end], head_size - len(head), service, weight, granted)
        head.extend(taken)
        if len(taken) < end - start:
            chosen = {job.job_id for job in taken}
            leftover = [job for job in ranked[start:end] if job.job_id not in chosen]
            return QueueOrder(tuple(head), (*leftover, *ranked[end:]))
        start = end
    return QueueOrder(tuple(head), tuple(ranked[start:]))


def _by_virtual_submit_time(
    pending: Sequence[PendingJob], weight: Callable[[PendingJob], float], share: float
) -> tuple[list[PendingJob], list[float]]:
    # Effective priority less the size penalty is (now - virtual) / AGING_STEP_S: ordering by this
    # "virtual submit time" (a priority point counts as a minute more of waiting, a second of expected
    # render as `share` of a second less) does not depend on the clock.
    # A float key sorts several times faster than a tuple; exact ties (rare) then go by job id, so
    # the order does not depend on the order of the snapshot's list.
    step = AGING_STEP_S
    virtual = [job.submitted_at - job.priority * step + share * weight(job) for job in pending]
    order = sorted(range(len(pending)), key=virtual.__getitem__)
    ranked = [pending[at] for at in order]
    keys = [virtual[at] for at in order]
    ties = [at for at in range(1, len(keys)) if keys[at] == keys[at - 1]]
    for at in ties:
        if at == 1 or keys[at - 2] != keys[at]:  # the start of a run of equal keys
            end = bisect_right(keys, keys[at], lo=at)
            ranked[at - 1 : end] = sorted(ranked[at - 1 : end], key=lambda job: job.job_id)
    return ranked, keys


def _merge_owners(
    band: list[PendingJob],
    limit: int,
    service: Callable[[str], float],
    weight: Callable[[PendingJob], float],
    granted: dict[str, float],
) -> list[PendingJob]:
    # Jobs of one effective priority, already in submit order: repeatedly let the owner with the
    # least service so far take its oldest job. `granted` carries this round's grants across bands.
    by_owner: dict[str, list[PendingJob]] = {}
    for job in band:
        by_owner.setdefault(job.owner, []).append(job)
    if len(by_owner) == 1:
        taken = band[:limit]
        for job in taken:
            granted[job.owner] = granted.get(job.owner, 0.0) + weight(job)
        return taken
    heap = [(service(owner) + granted.get(owner, 0.0), owner) for owner in by_owner]
    heapq.heapify(heap)
    position = dict.fromkeys(by_owner, 0)
    taken = []
    while heap and len(taken) < limit:
        used, owner = heapq.heappop(heap)
        job = by_owner[owner][position[owner]]
        position[owner] += 1
        taken.append(job)
        cost = weight(job)
        granted[owner] = granted.get(owner, 0.0) + cost
        if position[owner] < len(by_owner[owner]):
            heapq.heappush(heap, (used + cost, owner))
    return taken
