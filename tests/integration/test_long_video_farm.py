"""A long video through the farm: WanGP's sliding windows as a chain of window attempts, each
window's frames kept in object storage and the next window placed by the scheduler; losing the
agent between windows redoes only the window it was rendering."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from controller.cli.client import FarmClient
from controller.ray_cluster import NAMESPACE, actor_name
from controller.store import JobStore
from gpu_agent.storage import windows_prefix
from processing.metadata import read_metadata
from processing.video import read_mp4
from tests.integration.farm_helpers import NodeSpec, ray_cluster, running_farm, tiny, wait_job, wait_until

# 25 frames in windows of 9: WanGP renders 9, then 8 + 8 after each shared frame (3 windows).
LONG = {"video_length": 25, "sliding_window_size": 9, "seed": 7}
STEPS = 40  # long enough to catch the second window denoising


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with ray_cluster([NodeSpec(("RTX 4090",), ram_gb=64), NodeSpec(("RTX 3090",), ram_gb=64)]) as running:
        yield running


def window_events(store: JobStore, job_id: str) -> list[tuple[int, str]]:
    """(windows done, agent) of each window stored, from the job's history."""
    return [(e.data["window"], e.data["agent_id"]) for e in store.events(job_id) if "window" in e.data]


def test_a_long_video_renders_window_by_window_and_survives_losing_its_agent(
    cluster: Cluster, tmp_path: Path
) -> None:
    with running_farm(tmp_path, cluster.address, agents=2) as farm:
        client = FarmClient(farm.url)
        [job] = client.submit([tiny("wan-ti2v-tiny", num_inference_steps=STEPS, **LONG)]).jobs
        # The second window is denoising: its progress counts past the first window's steps.
        wait_until(
            lambda: client.job(job.id).state == "running" and client.job(job.id).progress.step > STEPS + 3,
            240,
            "the second window to be denoising",
        )
        assert window_events(farm.store, job.id) == [(1, client.job(job.id).agent)]  # one stored, same agent
        victim = client.job(job.id).agent
        assert victim is not None
        ray.kill(ray.get_actor(actor_name(victim), namespace=NAMESPACE), no_restart=True)
        done = wait_job(client, job.id, timeout_s=300)
        assert done.state == "succeeded"
        # Three windows and the one lost: the first window was not rendered again.
        assert done.attempts == 4 and victim in " ".join(done.attempt_errors)
        assert [n for n, _ in window_events(farm.store, job.id)] == [1, 2]
        assert window_events(farm.store, job.id)[1][1] != victim
        [output] = done.outputs
        video = client.download(output.url, tmp_path / output.name)
        assert read_mp4(video).frame_count == 25  # what WanGP gives for these settings
        metadata = read_metadata(video)
        assert metadata is not None and metadata["video_length"] == 25
        assert not farm.storage.list(windows_prefix(job.id))  # the output holds them now
        client.close()
