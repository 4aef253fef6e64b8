"""Baseline `affinity`: the model's loaded replica first, else the least loaded free agent.

Rule: Ray Serve model multiplexing routes a request for `multiplexed_model_id` to a replica that has
the model loaded; failing that, to the replicas with the fewest models loaded (so nothing is
evicted), then any (ray/serve/_private/request_router/request_router.py, "multiplex" candidates).
SwarmUI's backend handler likewise prefers a free backend with the model already loaded, else the
least used one. Requests are served in arrival order; neither looks at card speed or disk caches.
Here an agent holds one job at a time, so "least loaded" among free agents is the one with no model
loaded (fewest models), then agent id order.
"""

from __future__ import annotations

from collections.abc import Callable

from models.catalogue import ModelPreset, get_model
from scheduler.baselines.common import FaceValue, assign, idle_agents, submit_order
from scheduler.policies import register
from scheduler.snapshot import AgentView, Assignment, Decisions, Observation, Snapshot, Waiting


@register("affinity")
class AffinityPolicy:
    """Arrival order; hot agent, else the free agent with fewest models loaded."""

    name = "affinity"

    def __init__(self, presets: Callable[[str], ModelPreset] = get_model) -> None:
        self.presets = presets

    def observe(self, observation: Observation) -> None:
        """Affinity does not learn."""

    def place(self, snapshot: Snapshot) -> Decisions:
        """Each job in arrival order goes to a free agent holding its model, else the least loaded."""
        face = FaceValue(self.presets, snapshot.agents)
        free = idle_agents(snapshot)
        assignments: list[Assignment] = []
        waiting: list[Waiting] = []
        for job in sorted(snapshot.pending, key=submit_order):
            preset = face.preset(job.model_id)
            able = [] if preset is None else [a for a in free if a.agent_id not in job.avoid_agents]
            candidates = [(a, p) for a in able if preset and (p := face.profile(preset, job, a)) is not None]
            if preset is None or not candidates:
                waiting.append(face.waiting(job, "affinity: no free agent can run it"))
                continue
            agent, profile = min(candidates, key=lambda pair: _load_order(pair[0], job.model_id))
            reason = "hot" if agent.hot_model == job.model_id else "least loaded"
            assignments.append(assign(preset, job, agent, profile, snapshot.now, reason))
            free.remove(agent)
        return Decisions(assignments=tuple(assignments), waiting=tuple(waiting))


def _load_order(agent: AgentView, model_id: str) -> tuple[int, int, str]:
    has_model = 0 if agent.hot_model == model_id else 1
    models_loaded = 0 if agent.hot_model is None else 1
    return (has_model, models_loaded, agent.agent_id)
