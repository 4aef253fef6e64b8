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

from models.catalogue import ModelPreset
from scheduler.baselines.common import Candidate, Choice, SubmitOrderBaseline
from scheduler.snapshot import AgentView, PendingJob


class AffinityPolicy(SubmitOrderBaseline):
    """Arrival order; hot agent, else the free agent with fewest models loaded."""

    name = "affinity"

    def choose(self, preset: ModelPreset, job: PendingJob, candidates: list[Candidate]) -> Choice:
        model_id = job.work.model_id
        agent, profile = min(candidates, key=lambda pair: _load_order(pair[0], model_id))
        return (agent, profile), "hot" if agent.hot_model == model_id else "least loaded"


def _load_order(agent: AgentView, model_id: str) -> tuple[int, int, str]:
    has_model = 0 if agent.hot_model == model_id else 1
    models_loaded = 0 if agent.hot_model is None else 1
    return (has_model, models_loaded, agent.agent_id)
