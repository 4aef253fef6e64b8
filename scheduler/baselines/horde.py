"""Baseline `horde`: AI Horde's matching; a free worker pops the best request it advertises a model for.

Rule: AI Horde (horde/database/functions.py, get_sorted_wp_filtered_to_worker) gives a polling
worker the waiting request of highest `extra_priority` (from the requester's kudos), oldest first,
among those whose model the worker advertises and whose width x height is within the worker's
max_pixels. Here priority stands for kudos and grows by one point per KUDOS_AGING_S waited, like the
kudos a waiting request accrues; a worker advertises the model it holds hot or cached.

Two adaptations, so a simulation can progress: max_pixels is not configured per agent, so it is
derived from VRAM (PIXELS_PER_GIB, i.e. 1 MP per 8 GiB, about what Horde workers set max_power to on
such cards); and when no agent of the pool advertises a model at all, any free agent that can run it
takes the job (real Horde workers would instead choose to load popular models).
"""

from __future__ import annotations

from models.memory import GIB
from scheduler.baselines.common import Baseline, FaceValue, assign, idle_agents
from scheduler.snapshot import AgentView, Assignment, Decisions, PendingJob, Snapshot

KUDOS_AGING_S = 60.0  # one priority point per minute waited
PIXELS_PER_GIB = 1024 * 1024 / 8  # max_pixels of a worker: 1 MP for every 8 GiB of VRAM


class HordePolicy(Baseline):
    """Worker-driven: each free agent, in id order, pops the best request it is eligible for."""

    name = "horde"

    def place(self, snapshot: Snapshot) -> Decisions:
        """Every free agent takes the highest-priority request it advertises the model of and fits."""
        face = FaceValue(self.catalogue, snapshot.agents)
        advertised = {model for agent in snapshot.agents for model in _advertises(agent)}
        queue = sorted(snapshot.pending, key=lambda job: _horde_order(job, snapshot.now))
        taken: set[str] = set()
        assignments: list[Assignment] = []
        for agent in idle_agents(snapshot):
            for job in queue:
                if job.job_id in taken or not _eligible(agent, job, advertised):
                    continue
                preset = face.preset(job.work.model_id)
                profile = None if preset is None else face.profile(preset, job, agent)
                if preset is None or profile is None:
                    continue
                reason = "advertised" if job.work.model_id in advertised else "no worker advertises it"
                assignments.append(assign(preset, job, agent, profile, snapshot.now, reason))
                taken.add(job.job_id)
                break
        waiting = [
            face.waiting(job, _why_waiting(job, advertised)) for job in queue if job.job_id not in taken
        ]
        return Decisions(assignments=tuple(assignments), waiting=tuple(waiting))


def max_pixels(agent: AgentView) -> int:
    """The worker's max_pixels, derived from its VRAM."""
    return int(agent.vram_total / GIB * PIXELS_PER_GIB)


def _eligible(agent: AgentView, job: PendingJob, advertised: set[str]) -> bool:
    work = job.work
    if agent.agent_id in job.avoid_agents or work.width * work.height > max_pixels(agent):
        return False
    return work.model_id in _advertises(agent) or work.model_id not in advertised


def _advertises(agent: AgentView) -> set[str]:
    models = set(agent.cached_models)
    for model in (agent.hot_model, agent.running_model):
        if model is not None:
            models.add(model)
    return models


def _horde_order(job: PendingJob, now: float) -> tuple[float, float, str]:
    kudos = job.priority + max(0.0, now - job.submitted_at) / KUDOS_AGING_S
    return (-kudos, job.submitted_at, job.job_id)


def _why_waiting(job: PendingJob, advertised: set[str]) -> str:
    work = job.work
    if work.model_id in advertised:
        return f"horde: no free worker advertising {work.model_id} accepts {work.width}x{work.height}"
    return "horde: no free agent can run it"
