"""Queue-driven autoscaling on Ray's real autoscaler (its fake multi-node provider: real raylets on
this machine, no Kubernetes): GPU classes at zero nodes grow from the queue and shrink once idle.

The 12 GB class's nodes are given 2 GB of RAM, so that the tiny models (2.5 GB at any profile)
fit the 24 GB class only: what makes a class unable to run a job is the scheduler's own feasibility
rule, whichever resource falls short. Timings are printed, for docs/autoscaling.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from controller.cli.client import FarmClient
from controller.farm import Farm
from scheduler.demand import GpuClass, ScalingRules
from tests.integration.autoscaling_cluster import (
    AutoscalingHead,
    WorkerType,
    autoscaling_cluster,
    class_nodes,
    wait_for,
)
from tests.integration.farm_helpers import running_farm, tiny, wait_job

NODE_IDLE_S = 6.0  # the autoscaler removes a node idle this long
AGENT_IDLE_S = 3.0  # an idle agent exits after this long
SMALL = WorkerType("gpu12", "RTX 3060", ram_gb=2, max_nodes=2)
BIG = WorkerType("gpu24", "RTX 4090", ram_gb=32, max_nodes=2)
RULES = ScalingRules(
    (
        GpuClass(
            "gpu12", "RTX 3060", max_gpus=2, ram_gb=2, idle_release_s=AGENT_IDLE_S, hot_release_s=AGENT_IDLE_S
        ),
        GpuClass(
            "gpu24",
            "RTX 4090",
            max_gpus=2,
            ram_gb=32,
            idle_release_s=AGENT_IDLE_S,
            hot_release_s=AGENT_IDLE_S,
        ),
    )
)
# About 0.05 s a step on these CPUs: seconds of denoising, drained well before the end.
LONG_STEPS = 150


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AutoscalingHead]:
    with autoscaling_cluster([SMALL, BIG], tmp_path_factory.mktemp("autoscaler"), NODE_IDLE_S) as running:
        yield running


@pytest.fixture(scope="module")
def farm(head: AutoscalingHead, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    with running_farm(
        tmp_path_factory.mktemp("farm"), head.address, agents=0, scaling=RULES, checkpoint_steps=10
    ) as running:
        yield running


def test_jobs_only_the_24gb_class_can_run_scale_it_from_zero_and_both_classes_return_to_zero(
    farm: Farm,
) -> None:
    client = FarmClient(farm.url)
    assert farm.agent_listing() == [] and class_nodes("gpu24") == class_nodes("gpu12") == 0
    small_nodes_seen = []

    def first_agent() -> bool:
        small_nodes_seen.append(class_nodes("gpu12"))
        return any(agent.gpu_class == "gpu24" for agent in farm.agent_listing())

    submitted = time.monotonic()
    jobs = client.submit([tiny("wan-tiny", seed=1), tiny("wan-tiny", seed=2)]).jobs
    wait_for(lambda: autoscale(farm)["classes"][1]["wanted"] == 2, 30, "demand for two 24 GB GPUs")
    reason = "waiting for a new node of GPU class gpu24 (RTX 4090): the autoscaler adds it"
    wait_for(lambda: client.job(jobs[0].id).wait_reason == reason, 30, "the job to say what it waits for")
    to_first_agent = wait_for(first_agent, 180, "an agent on a new 24 GB node")
    done = [wait_job(client, job.id, timeout_s=180) for job in jobs]
    assert [job.state for job in done] == ["succeeded", "succeeded"]
    assert all(job.agent and farm_class(farm, job.agent) in ("gpu24", None) for job in done)
    assert max(small_nodes_seen) == 0 and class_nodes("gpu12") == 0  # the other class stayed at zero

    last_done = time.monotonic()
    to_zero = wait_for(
        lambda: class_nodes("gpu24") == 0, AGENT_IDLE_S + NODE_IDLE_S + 60, "the 24 GB class back to zero"
    )
    assert farm.agent_listing() == [] and class_nodes("gpu12") == 0
    view = autoscale(farm)
    assert view["enabled"] and [c["wanted"] for c in view["classes"]] == [0, 0]
    assert view["released"] >= 1
    metrics = httpx.get(f"{farm.url}/metrics").text
    assert 'wanfarm_agents_released_total{gpu_class="gpu24",reason="idle"}' in metrics
    assert 'wanfarm_class_gpus_wanted{gpu_class="gpu24"} 0.0' in metrics
    print(
        f"\nautoscaling: submit to first agent of a new node {to_first_agent:.1f} s "
        f"(from submit {time.monotonic() - submitted:.0f} s ago); last job to scale-down {to_zero:.1f} s "
        f"(agent idle {AGENT_IDLE_S:.0f} s + node idle {NODE_IDLE_S:.0f} s)"
    )
    del last_done
    client.close()


def test_a_node_drained_mid_job_loses_nothing_the_job_resumes_on_a_new_node(farm: Farm) -> None:
    client = FarmClient(farm.url)
    [job] = client.submit([tiny("wan-tiny", num_inference_steps=LONG_STEPS)]).jobs
    wait_for(lambda: client.job(job.id).progress.step > 20, 240, "the job to be denoising on a new node")
    first = client.job(job.id).agent
    assert first is not None
    drained = httpx.post(f"{farm.url}/v1/agents/{first}/drain", json={}).json()
    assert drained["state"] == "draining" and drained["job_id"] == job.id

    done = wait_job(client, job.id, timeout_s=240)
    assert done.state == "succeeded" and done.agent != first
    [line] = done.attempt_errors
    assert line.startswith(f"attempt 1 on {first}: its agent was drained at step ") and line.endswith(
        "not charged"
    )
    assert first not in [agent.agent_id for agent in farm.agent_listing()]
    metrics = httpx.get(f"{farm.url}/metrics").text
    resumed = [
        float(row.split()[-1])
        for row in metrics.splitlines()
        if row.startswith("wanfarm_steps_resumed_total")
    ]
    assert resumed and resumed[0] >= 20  # resumed from its checkpoint, not from step 0
    assert 'wanfarm_agents_released_total{gpu_class="gpu24",reason="drained"} 1.0' in metrics
    client.close()


def farm_class(farm: Farm, agent_id: str) -> str | None:
    """The class of an agent still listed (None once it has gone)."""
    return next((a.gpu_class for a in farm.agent_listing() if a.agent_id == agent_id), None)


def autoscale(farm: Farm) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{farm.url}/v1/autoscale").json()
    return answer
