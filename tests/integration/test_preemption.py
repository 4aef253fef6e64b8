"""Preemption by priority on a real Ray cluster: a priority-90 job takes the only agent from a long
priority-10 job at a step boundary; the low job queues again uncharged and finishes after it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ray.cluster_utils import Cluster

from controller.cli.client import FarmClient
from scheduler.preemption import PreemptionRule
from scheduler.wanfarm.policy import WanfarmPolicy
from tests.integration.farm_helpers import NodeSpec, ray_cluster, running_farm, tiny, wait_job, wait_until

# About 0.05 s a step on these CPUs: 7.5 s of denoising, caught running well before 80% of it.
LONG_STEPS = 150


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with ray_cluster([NodeSpec(("RTX 4090",), ram_gb=64)]) as running:
        yield running


def test_a_high_priority_job_preempts_a_long_low_one_which_then_finishes_uncharged(
    cluster: Cluster, tmp_path: Path
) -> None:
    with running_farm(tmp_path, cluster.address, agents=1) as farm:
        # The farm's bound is a minute of waiting; this job of seconds must count as long.
        assert farm.dispatcher is not None and isinstance(farm.dispatcher.policy, WanfarmPolicy)
        farm.dispatcher.policy.preemption = PreemptionRule(wait_s=2.0)
        client = FarmClient(farm.url)
        [low] = client.submit([tiny("wan-tiny", num_inference_steps=LONG_STEPS)], priority=10).jobs
        wait_until(lambda: client.job(low.id).progress.step > 3, 120, "the low job to be denoising")
        [high] = client.submit([tiny("wan-tiny", seed=2)], priority=90).jobs

        high_done = wait_job(client, high.id, timeout_s=120)
        low_done = wait_job(client, low.id, timeout_s=180)
        assert high_done.state == low_done.state == "succeeded"
        assert high_done.finished_at is not None and low_done.finished_at is not None
        assert high_done.finished_at < low_done.finished_at
        # Stopped once at a step boundary, queued with its progress, not charged: two starts, one
        # charged; its agent was not avoided (there is no other).
        assert low_done.preemptions == 1 and high_done.preemptions == 0
        assert low_done.attempts == 2
        [line] = low_done.attempt_errors
        assert line.startswith(f"attempt 1 on {low_done.agent}: preempted at step ") and line.endswith(
            "not charged"
        )
        stopped = [e.data for e in farm.store.events(low.id) if e.data.get("preempted")]
        assert len(stopped) == 1 and stopped[0]["state"] == "queued"
        [output] = low_done.outputs
        assert output.name.endswith(".mp4")
        metrics = httpx.get(f"{farm.url}/metrics").text
        assert 'wanfarm_preemptions_total{model="wan-tiny"} 1.0' in metrics
        client.close()
