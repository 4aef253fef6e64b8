"""Baseline `fifo`: first come, first served, each job on the first free agent that can run it.

Rule (as plain job queues decide): jobs leave the queue in submit order, priority ignored, and each
goes to the first idle worker able to take it, with no notion of speed or warm weights: Celery and
RQ workers pull the oldest message; ComfyUI's PromptQueue hands out prompts by submission number.
A job no free agent can run is skipped, not blocking the ones behind it.
"""

from __future__ import annotations

from collections.abc import Callable

from models.catalogue import ModelPreset, get_model
from scheduler.baselines.common import FaceValue, assign, idle_agents, submit_order
from scheduler.policies import register
from scheduler.snapshot import Assignment, Decisions, Observation, Snapshot, Waiting


@register("fifo")
class FifoPolicy:
    """Submit order; first feasible free agent in agent-id order."""

    name = "fifo"

    def __init__(self, presets: Callable[[str], ModelPreset] = get_model) -> None:
        self.presets = presets

    def observe(self, observation: Observation) -> None:
        """FIFO does not learn."""

    def place(self, snapshot: Snapshot) -> Decisions:
        """Each job in submit order takes the first idle agent that can run it, if any."""
        face = FaceValue(self.presets, snapshot.agents)
        free = idle_agents(snapshot)
        assignments: list[Assignment] = []
        waiting: list[Waiting] = []
        for job in sorted(snapshot.pending, key=submit_order):
            preset = face.preset(job.model_id)
            chosen = None
            if preset is not None:
                for agent in free:
                    profile = None if agent.agent_id in job.avoid_agents else face.profile(preset, job, agent)
                    if profile is not None:
                        chosen = agent
                        assignments.append(assign(preset, job, agent, profile, snapshot.now, "first free"))
                        break
            if chosen is None:
                waiting.append(face.waiting(job, "fifo: no free agent can run it"))
            else:
                free.remove(chosen)
        return Decisions(assignments=tuple(assignments), waiting=tuple(waiting))
