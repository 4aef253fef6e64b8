"""Losing an agent or the controller mid-job loses no accepted job and duplicates none; a job whose
agent dies resumes from its last checkpoint."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray
from prometheus_client.parser import text_string_to_metric_families
from ray.cluster_utils import Cluster

from controller.cli.client import FarmClient
from controller.ray_cluster import NAMESPACE, actor_name
from gpu_agent.storage import checkpoints_prefix
from processing.video import read_mp4
from tests.integration.farm_helpers import NodeSpec, ray_cluster, running_farm, tiny, wait_job, wait_until

# About 0.05 s a step on these CPUs: long enough to be caught running, short enough to finish.
LONG_STEPS = 300
CHECKPOINT_STEPS = 5
RESUMED_STEPS = 60  # a job killed after two checkpoints, and the same one again unbroken


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with ray_cluster([NodeSpec(("RTX 4090",), ram_gb=64), NodeSpec(("RTX 3090",), ram_gb=64)]) as running:
        yield running


def test_a_job_whose_agent_dies_resumes_on_another_from_its_checkpoint_with_the_same_frames(
    cluster: Cluster, tmp_path: Path
) -> None:
    with running_farm(tmp_path, cluster.address, agents=2, checkpoint_steps=CHECKPOINT_STEPS) as farm:
        client = FarmClient(farm.url)
        settings = tiny("wan-tiny", num_inference_steps=RESUMED_STEPS)
        [job] = client.submit([settings]).jobs
        wait_until(lambda: client.job(job.id).progress.step > 2 * CHECKPOINT_STEPS, 120, "two checkpoints")
        victim = client.job(job.id).agent
        assert victim is not None
        ray.kill(ray.get_actor(actor_name(victim), namespace=NAMESPACE), no_restart=True)
        done = wait_job(client, job.id, timeout_s=180)
        assert done.state == "succeeded" and done.attempts == 2
        assert done.agent != victim and victim in " ".join(done.attempt_errors)
        [output] = done.outputs  # one output: the lost attempt left nothing behind
        assert output.name.endswith(".mp4")
        # Only the steps since its last checkpoint were run again.
        counted = _counters(farm.metrics.exposition())
        assert counted["wanfarm_steps_resumed_total"] >= 2 * CHECKPOINT_STEPS
        # At most the steps it ran past its last checkpoint (none when it died on one).
        assert counted.get("wanfarm_steps_redone_total", 0.0) < CHECKPOINT_STEPS
        assert not farm.storage.list(checkpoints_prefix(job.id))  # deleted with its success
        # The same work never interrupted gives the same frames.
        [again] = client.submit([settings]).jobs
        [whole] = wait_job(client, again.id, timeout_s=180).outputs
        resumed = read_mp4(client.download(output.url, tmp_path / "resumed.mp4")).frames
        assert np.array_equal(resumed, read_mp4(client.download(whole.url, tmp_path / "whole.mp4")).frames)
        client.close()


def test_a_killed_controller_restarts_and_every_job_finishes(cluster: Cluster, tmp_path: Path) -> None:
    port = _free_port()
    command = [
        sys.executable, "-m", "controller.cli", "up", "--ray-address", cluster.address,
        "--data-dir", str(tmp_path / "farm"), "--port", str(port),
    ]  # fmt: skip
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    controller = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    client = FarmClient(f"http://127.0.0.1:{port}")
    try:
        _wait_serving(controller, client)
        running = client.submit([tiny("wan-tiny", num_inference_steps=LONG_STEPS)]).jobs[0]
        queued = client.submit([tiny("flux-tiny", seed=s) for s in range(4)]).jobs
        wait_until(lambda: client.job(running.id).progress.step > 3, 120, "the long job to be denoising")
        controller.send_signal(signal.SIGKILL)
        controller.wait(timeout=30)

        controller = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        _wait_serving(controller, client)
        finished = [wait_job(client, job.id, timeout_s=180) for job in [running, *queued]]
        assert [job.state for job in finished] == ["succeeded"] * 5
        # The running job was found again on its agent, not started over.
        assert finished[0].attempts == 1
        assert all(len(job.outputs) == 1 for job in finished)
        assert len(client.jobs(limit=100).jobs) == 5
    finally:
        controller.send_signal(signal.SIGTERM)
        controller.wait(timeout=60)
        client.close()


def _counters(exposition: bytes) -> dict[str, float]:
    """The farm's counters summed over their labels."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition.decode()):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def _wait_serving(controller: subprocess.Popen[str], client: FarmClient) -> None:
    assert controller.stdout is not None
    line = controller.stdout.readline()  # "WanFarm serving ..." once the API answers
    assert "WanFarm serving" in line, line
    wait_until(lambda: len(client.agents()) == 2, 120, "both agents")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
