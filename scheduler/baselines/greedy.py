"""Baseline `greedy`, the farm's first policy: highest priority first, each on the best idle agent.

"Best" prefers an agent with the model hot in memory, then one that caches it on disk, then the
fastest card (half-precision TFLOPS, then VRAM). Each agent takes at most one job per round. A job
that finds no agent waits, with a reason: either no agent can ever run it (the pool refusal), or
the ones that can are busy, with an ETA from the earliest of them to come free.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.catalogue import ModelPreset
from models.profiles import Profile
from scheduler.baselines.common import Baseline, assign
from scheduler.cost import job_seconds
from scheduler.feasibility import choose_profile, pool_refusal, unknown_model
from scheduler.snapshot import AgentView, Assignment, Decisions, PendingJob, Snapshot, Waiting


class GreedyPolicy(Baseline):
    """Priority-ordered, one job per idle agent per round; no preemption, no prefetch."""

    name = "greedy"

    def place(self, snapshot: Snapshot) -> Decisions:
        """Assignments for the jobs that fit an idle agent now; the others wait, with a reason."""
        free = {
            agent.agent_id: agent for agent in sorted(snapshot.agents, key=lambda a: a.agent_id) if agent.idle
        }
        # When each agent can next take a job: busy ones at busy_until, those placed this round at
        # their new job's estimated finish.
        free_at = {
            agent.agent_id: max(snapshot.now, agent.busy_until)
            for agent in snapshot.agents
            if agent.busy_until is not None
        }
        assignments: list[Assignment] = []
        waiting: list[Waiting] = []
        for job in sorted(snapshot.pending, key=_job_order):
            preset = self.catalogue.preset(job.work.model_id)
            if preset is None:
                waiting.append(Waiting(job.job_id, unknown_model(job.work.model_id)))
                continue
            assignment = _place_one(preset, job, list(free.values()), snapshot.now)
            if assignment is None:
                waiting.append(_wait(preset, job, snapshot.agents, free_at))
                continue
            assignments.append(assignment)
            del free[assignment.agent_id]
            free_at[assignment.agent_id] = assignment.est_finish
        return Decisions(assignments=tuple(assignments), waiting=tuple(waiting))


@dataclass(frozen=True)
class _Candidate:
    agent: AgentView
    profile: Profile
    reason: str


def _job_order(job: PendingJob) -> tuple[int, float, str]:
    # Priority descending, then first come first served; the id only breaks exact ties.
    return (-job.priority, job.submitted_at, job.job_id)


def _place_one(preset: ModelPreset, job: PendingJob, free: list[AgentView], now: float) -> Assignment | None:
    candidates = []
    for agent in free:
        if agent.agent_id in job.avoid_agents:
            continue
        profile = choose_profile(preset, job.work, agent, job.overrides)
        if profile is not None:
            candidates.append(_Candidate(agent, profile, _warmth(preset, agent)))
    if not candidates:
        return None
    best = min(candidates, key=_candidate_order)
    return assign(preset, job, best.agent, best.profile, now, best.reason)


def _warmth(preset: ModelPreset, agent: AgentView) -> str:
    if agent.hot_model == preset.id:
        return "hot"
    if preset.id in agent.cached_models:
        return "cached"
    return "fastest free"


_WARMTH_RANK = {"hot": 0, "cached": 1, "fastest free": 2}


def _candidate_order(candidate: _Candidate) -> tuple[int, float, int, str]:
    agent = candidate.agent
    return (_WARMTH_RANK[candidate.reason], -agent.half_tflops, -agent.vram_total, agent.agent_id)


def _wait(
    preset: ModelPreset, job: PendingJob, agents: tuple[AgentView, ...], free_at: dict[str, float]
) -> Waiting:
    refusal = pool_refusal(preset, job.work, agents, job.overrides)
    if refusal is not None:
        return Waiting(job.job_id, f"no agent can run it: {refusal}")
    capable = [
        (agent, profile)
        for agent in agents
        if agent.agent_id not in job.avoid_agents
        and (profile := choose_profile(preset, job.work, agent, job.overrides)) is not None
    ]
    if not capable:
        avoided = ", ".join(sorted(job.avoid_agents))
        return Waiting(
            job.job_id, f"no agent left to try: every agent that can run it failed it before ({avoided})"
        )
    # Every capable agent is busy or was taken this round, so each has a time it comes free.
    eta = min(
        free_at[agent.agent_id] + job_seconds(preset, job.work, agent, profile) for agent, profile in capable
    )
    return Waiting(job.job_id, "waiting for a free agent that can run it", eta)
