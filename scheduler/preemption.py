"""Preemption by priority: which running job gives its agent to a queued job of a higher class.

A queued job preempts only a job of a lower priority class (PRIORITY_CLASS_WIDTH), only when no agent
that can run it is free, the soonest of them frees later than `PreemptionRule.wait_s` (from the
running job's own progress when it reported some, else from its estimate), and on the freed agent it
would finish more than `wait_s` sooner than by waiting (the later of placement's estimate and the
best busy agent's; so placement then takes that agent rather than keep waiting for a faster one).
The victim is the lowest-priority, least-progressed running job among such agents; a job already
preempted `max_preemptions` times, or past `near_done_share` of its steps, or one the policy's queue
would put ahead of the waiting job once stopped (`QueuedBefore`), is never chosen. One
preemption per agent a round; an agent already stopping, or one about to free, serves the first
waiting job that can use it. Why these figures: docs/scheduler.md, "Preemption".
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from scheduler.snapshot import AgentView, Decisions, PendingJob, Preemption, Snapshot, Waiting

PRIORITY_CLASS_WIDTH = 25  # classes 0-24, 25-49, 50-74, 75-100
MAX_PREEMPTIONS = 2  # a job is stopped at most this often; then it runs to its end
NEAR_DONE_SHARE = 0.8  # a job past this share of its steps finishes: a checkpoint would save little
WAIT_S = 60.0  # a wait shorter than a checkpoint, a reload and the redone steps is not worth a stop
JOBS_LOOKED_AT = 64  # queued jobs a round looks at, highest priority first
BUSY_LOOKED_AT = 64  # busy agents, soonest free first, a job's finish by waiting is taken over
# A view's progress moves in steps of this share of the job: a new view each step would make every
# busy agent look changed each round (the pool index rebuilds), and the pace is known anyway.
PROGRESS_GRAIN = 0.05

# When the job would finish on the agent were the agent free now (its load and render there);
# None when the agent cannot run it. The policy's own estimates, as placement uses them.
FinishOn = Callable[[PendingJob, AgentView], float | None]
# Whether the agent's running job, queued again now, would come before the waiting job in the
# policy's queue order (its aging, say): then a stop would only hand it the agent back.
QueuedBefore = Callable[[AgentView, PendingJob], bool]


def priority_class(priority: int) -> int:
    """0 for priorities 0-24, 1 for 25-49, 2 for 50-74, 3 for 75-100."""
    return min(max(priority, 0), 4 * PRIORITY_CLASS_WIDTH - 1) // PRIORITY_CLASS_WIDTH


@dataclass(frozen=True)
class PreemptionRule:
    """The bounds of preemption; `choose` applies them to one round."""

    wait_s: float = WAIT_S
    max_preemptions: int = MAX_PREEMPTIONS
    near_done_share: float = NEAR_DONE_SHARE
    jobs_looked_at: int = JOBS_LOOKED_AT

    def choose(
        self,
        snapshot: Snapshot,
        decisions: Decisions,
        finish_on: FinishOn,
        queued_before: QueuedBefore | None = None,
    ) -> tuple[Preemption, ...]:
        """The preemptions this round calls for, given what placement already decided; never of a
        job that `queued_before` says would queue ahead of the one it stops for."""
        victims = self._preemptible(snapshot.agents)
        if not victims:
            return ()
        lowest = min(priority_class(agent.running_priority or 0) for agent in victims)
        if lowest >= priority_class(4 * PRIORITY_CLASS_WIDTH):
            return ()  # nothing outranks the top class
        # priority_class(p) > lowest, as one comparison: the pending queue can be 100,000 long.
        least = (lowest + 1) * PRIORITY_CLASS_WIDTH
        placed = {assignment.job_id for assignment in decisions.assignments}
        candidates = [job for job in snapshot.pending if job.priority >= least and job.job_id not in placed]
        if not candidates:
            return ()
        # Highest priority first, queue order among equals (nsmallest is sorted()[:n], stable).
        candidates = heapq.nsmallest(self.jobs_looked_at, candidates, key=lambda job: -job.priority)
        pool = _Pool(snapshot, decisions, victims)
        expected = {wait.job_id: wait.eta for wait in decisions.waiting}
        chosen: list[Preemption] = []
        unclaimed = {victim.agent_id for victim in victims} - pool.claimed
        for job in candidates:
            preemption = self._for_job(job, expected.get(job.job_id), pool, finish_on, queued_before)
            if preemption is not None:
                chosen.append(preemption)
            unclaimed -= pool.claimed
            if not unclaimed:
                break
        return tuple(chosen)

    def _for_job(
        self,
        job: PendingJob,
        eta: float | None,
        pool: _Pool,
        finish_on: FinishOn,
        queued_before: QueuedBefore | None,
    ) -> Preemption | None:
        # `eta`: the finish placement expects for the job (None: not estimated). Claims in `pool`
        # the agent the job waits for or takes.
        claimed, now = pool.claimed, pool.now

        def finish(agent: AgentView) -> float | None:
            if agent.agent_id in claimed or agent.agent_id in job.avoid_agents:
                return None
            return finish_on(job, agent)

        if any(finish(agent) is not None for agent in pool.idle):
            return None  # placement chose to wait for a better agent
        # Busy agents soonest free first: the first that can run it is the wait; the best finish by
        # waiting is found before the agents free too late to beat it.
        soonest: AgentView | None = None
        waited = math.inf
        looked_at = 0
        for agent in pool.busy:
            frees_in = pool.frees_in[agent.agent_id]
            if now + frees_in >= waited or looked_at == BUSY_LOOKED_AT:
                break
            done = finish(agent)
            if done is None:
                continue
            soonest = soonest or agent
            waited = min(waited, done + frees_in)
            looked_at += 1
        if soonest is None:
            return None
        wait = pool.frees_in[soonest.agent_id]
        if wait <= self.wait_s:
            claimed.add(soonest.agent_id)  # it frees in time (or is stopping already): this job's
            return None
        # Its finish by waiting: the later of placement's estimate and the best busy agent's, by when
        # that agent frees as its job's own pace tells (placement trusts estimates a job may be past).
        later = max(waited, -math.inf if eta is None else eta) - self.wait_s
        job_class = priority_class(job.priority)
        victim = next(
            (
                agent
                for agent in pool.victims  # lowest priority, least progressed first
                if priority_class(agent.running_priority or 0) < job_class
                and (done := finish(agent)) is not None
                and done < later
                and (queued_before is None or not queued_before(agent, job))
            ),
            None,
        )
        if victim is None:
            return None
        claimed.add(victim.agent_id)
        progress = (
            f"step {victim.running_step}/{victim.running_total}" if victim.running_total else "not started"
        )
        reason = (
            f"priority {job.priority} job {job.job_id} would wait {wait:.0f} s for an agent that can run it; "
            f"{victim.running_job} (priority {victim.running_priority}, {progress}, "
            f"preempted {victim.running_preemptions} times before) checkpoints on {victim.agent_id}"
        )
        assert victim.running_job is not None  # _preemptible
        return Preemption(victim.running_job, victim.agent_id, job.job_id, reason)

    def _preemptible(self, agents: Sequence[AgentView]) -> list[AgentView]:
        # One comprehension over every agent each round: no call per agent.
        most, near = self.max_preemptions, self.near_done_share
        return [
            agent
            for agent in agents
            if agent.busy_until is not None
            and not agent.preempting
            and agent.running_job is not None
            and agent.running_priority is not None
            and agent.running_preemptions < most
            and (agent.running_step / agent.running_total if agent.running_total else 0.0) < near
        ]


class _Pool:
    """A round's agents as preemption looks at them: idle ones, busy ones soonest free first, the
    preemptible ones, and those claimed (placed this round, or kept for a waiting job)."""

    def __init__(self, snapshot: Snapshot, decisions: Decisions, victims: list[AgentView]) -> None:
        self.now = snapshot.now
        self.agents = snapshot.agents
        self.claimed = {assignment.agent_id for assignment in decisions.assignments}
        self.idle = [agent for agent in snapshot.agents if agent.busy_until is None]
        self._victims = victims

    # The busy agents and the victims in order are built on first use: a round whose jobs all have a
    # free agent that can run them never looks at them.

    @cached_property
    def frees_in(self) -> dict[str, float]:
        now = self.now
        return {
            agent.agent_id: _frees_in(agent, now) for agent in self.agents if agent.busy_until is not None
        }

    @cached_property
    def busy(self) -> list[AgentView]:
        frees_in = self.frees_in
        busy = [agent for agent in self.agents if agent.busy_until is not None]
        return sorted(busy, key=lambda agent: (frees_in[agent.agent_id], agent.agent_id))

    @cached_property
    def victims(self) -> list[AgentView]:
        return sorted(
            self._victims, key=lambda agent: (agent.running_priority, _done_share(agent), agent.agent_id)
        )


def progress_moved(shown: int, step: int, total: int) -> bool:
    """Whether a view showing step `shown` of `total` is worth a new one at `step` (PROGRESS_GRAIN)."""
    return step // max(1, int(total * PROGRESS_GRAIN)) != shown // max(1, int(total * PROGRESS_GRAIN))


def with_preemptions(decisions: Decisions, preemptions: Sequence[Preemption]) -> Decisions:
    """`decisions` with the preemptions added, and each preempting job's wait saying so."""
    if not preemptions:
        return decisions
    by_job = {preemption.for_job_id: preemption for preemption in preemptions}
    waiting = tuple(
        Waiting(
            wait.job_id,
            f"preempting {by_job[wait.job_id].job_id} on {by_job[wait.job_id].agent_id}",
            wait.eta,
        )
        if wait.job_id in by_job
        else wait
        for wait in decisions.waiting
    )
    return replace(decisions, waiting=waiting, preemptions=(*decisions.preemptions, *preemptions))


def _frees_in(agent: AgentView, now: float) -> float:
    """Seconds until the agent's job ends: from its own pace once it reported steps, else from its
    estimate; 0 while it stops for a preemption, or once it runs past an estimate (any moment)."""
    if agent.busy_until is None or agent.preempting:
        return 0.0
    step, since, at = agent.running_step, agent.running_since, agent.running_step_at
    if step > 0 and agent.running_total > 0 and since is not None and at is not None:
        # Its loading counts in the pace: the estimate errs long, towards a stop, for a job that loads long.
        per_step = max(0.0, at - since) / step
        return max(0.0, per_step * max(0, agent.running_total - step) - max(0.0, now - at))
    assert agent.busy_until is not None
    return max(0.0, agent.busy_until - now)


def _done_share(agent: AgentView) -> float:
    return agent.running_step / agent.running_total if agent.running_total else 0.0
