"""Baseline `locality`: the free agent that would load the model fastest, holders first.

Rule: ServerlessLLM's storage-aware scheduler (sllm/serve/schedulers/storage_aware_scheduler.py,
OSDI '24 section 5) estimates each server's model-loading time from where the checkpoint sits (in
memory, on local SSD at the disk's bandwidth, or remote at the network's) and picks the server with
the least, preferring servers that hold the checkpoint. Requests are served first come, first
served; render speed is not part of the decision.
"""

from __future__ import annotations

from models.catalogue import ModelPreset
from scheduler.baselines.common import Candidate, Choice, SubmitOrderBaseline
from scheduler.snapshot import AgentView, PendingJob


class LocalityPolicy(SubmitOrderBaseline):
    """Arrival order; least estimated load time among free agents holding the checkpoint, else any."""

    name = "locality"

    def choose(self, preset: ModelPreset, job: PendingJob, candidates: list[Candidate]) -> Choice:
        holders = [pair for pair in candidates if _holds(pair[0], job.work.model_id)] or candidates
        agent, profile = min(holders, key=lambda pair: (load_estimate(preset, pair[0]), pair[0].agent_id))
        return (agent, profile), "hot" if agent.hot_model == job.work.model_id else "least load time"


def load_estimate(preset: ModelPreset, agent: AgentView) -> float:
    """Seconds to have the weights in memory: 0 hot, a disk read cached, a download and a read else."""
    if agent.hot_model == preset.id:
        return 0.0
    read = preset.weight_bytes / agent.disk_bytes_per_s
    if preset.id in agent.cached_models:
        return read
    return preset.weight_bytes / agent.net_bytes_per_s + read


def _holds(agent: AgentView, model_id: str) -> bool:
    return agent.hot_model == model_id or model_id in agent.cached_models
