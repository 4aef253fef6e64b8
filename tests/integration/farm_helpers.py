"""Real farms for tests: a multi-node Ray cluster on this machine, declared GPUs, a live API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.cluster_utils import Cluster

from controller.cli.client import FarmClient
from controller.farm import Farm, FarmConfig
from controller.ray_cluster import DECLARED_LABEL, DECLARED_RAM_LABEL, encode_declared
from controller.schemas import JobOut
from scheduler.demand import class_resource

FINISHED = {"succeeded", "failed", "canceled"}


@dataclass(frozen=True)
class NodeSpec:
    """A worker node that declares these GPU-table cards and, optionally, its RAM and GPU class."""

    gpus: tuple[str, ...]
    ram_gb: float | None = None
    gpu_class: str | None = None  # advertises class_resource(gpu_class), one unit per GPU


@contextmanager
def ray_cluster(nodes: list[NodeSpec]) -> Iterator[Cluster]:
    """A head without GPUs plus one raylet per spec, all on this machine."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    for spec in nodes:
        labels = {DECLARED_LABEL: encode_declared(spec.gpus)}
        if spec.ram_gb:
            labels[DECLARED_RAM_LABEL] = str(spec.ram_gb)
        resources = {class_resource(spec.gpu_class): len(spec.gpus)} if spec.gpu_class else None
        cluster.add_node(num_cpus=1, num_gpus=len(spec.gpus), labels=labels, resources=resources)
    try:
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


@contextmanager
def running_farm(data_dir: Path, address: str | None, agents: int, **options: Any) -> Iterator[Farm]:
    """A farm on the cluster at `address`, once `agents` agents answer; its agents die with it."""
    farm = Farm(FarmConfig(data_dir=data_dir, port=0, ray_address=address, **options)).start()
    try:
        wait_until(lambda: len(farm.agent_listing()) >= agents, 120, f"{agents} agents")
        yield farm
    finally:
        farm.stop(kill_agents=True)


def wait_until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout_s:.0f} s")
        time.sleep(0.2)


def wait_job(client: FarmClient, job_id: str, timeout_s: float = 120) -> JobOut:
    """The job once it has finished."""
    result: list[JobOut] = []

    def finished() -> bool:
        job = client.job(job_id)
        result[:] = [job]
        return job.state in FINISHED

    wait_until(finished, timeout_s, f"job {job_id} to finish")
    return result[0]


def tiny(model: str = "wan-tiny", **settings: Any) -> dict[str, Any]:
    """Settings of a quick tiny-model job."""
    base: dict[str, Any] = {"model_type": model, "prompt": "a test", "seed": 1}
    if model in ("wan-tiny", "ltx-tiny"):
        base["video_length"] = 9
    return base | settings
