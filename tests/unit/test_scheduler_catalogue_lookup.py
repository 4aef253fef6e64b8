"""Every policy reads a model from the catalogue once for its lifetime, however many rounds it plays."""

from __future__ import annotations

from collections import Counter

import pytest

from models.catalogue import ModelPreset, get_model
from models.profiles import Profile
from scheduler.registry import get_policy, policy_names
from scheduler.snapshot import Observation, PendingJob, Snapshot
from tests.declared_agents import declared_agent
from tests.job_records import pending_job

MODELS = ("wan2.1-t2v-1.3b", "flux.1-schnell", "no-such-model")


@pytest.mark.parametrize("name", policy_names())
def test_a_policy_looks_each_model_up_once_across_rounds_and_observations(name: str) -> None:
    looked_up: Counter[str] = Counter()

    def presets(model_id: str) -> ModelPreset:
        looked_up[model_id] += 1
        return get_model(model_id)

    policy = get_policy(name, presets=presets)
    agents = (declared_agent("RTX 4090", "a"), declared_agent("RTX 3060", "b"))
    for round_number in range(3):
        pending = tuple(_job(f"r{round_number}-{model}", model) for model in MODELS)
        policy.place(Snapshot(100.0 * round_number, agents, pending))
        policy.observe(_finished(f"r{round_number}", MODELS[0]))
    assert looked_up == dict.fromkeys(MODELS, 1)


def _job(job_id: str, model_id: str) -> PendingJob:
    return pending_job(job_id, model_id, size=(832, 480, 33), steps=20)


def _finished(job_id: str, model_id: str) -> Observation:
    work = _job(job_id, model_id).work
    return Observation(
        job_id,
        work,
        "RTX 4090",
        Profile.P1,
        render_seconds=30.0,
        load_seconds=2.0,
        owner="ann",
        finished_at=50.0,
    )
