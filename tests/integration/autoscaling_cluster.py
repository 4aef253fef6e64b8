"""Ray's real autoscaler over simulated nodes on this machine (its fake multi-node provider).

`ray.cluster_utils.AutoscalingCluster` does this too, but reads a base config its wheel lacks and
runs `ray stop --force`, which kills every Ray process on the machine (other tests' clusters): this
one starts its head on a free port and stops only the processes that name that port. Each worker
type is a GPU class: its nodes declare a GPU-table card (the farm's declared-GPU label, rendered on
the CPU) and advertise the class resource, as a KubeRay worker group does.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil

from controller.ray_cluster import DECLARED_LABEL, DECLARED_RAM_LABEL, encode_declared
from scheduler.demand import class_resource


@dataclass(frozen=True)
class WorkerType:
    """Nodes of one GPU class: `gpu` declared, `ram_gb` declared, one GPU each, at most `max_nodes`."""

    gpu_class: str
    gpu: str
    ram_gb: float
    max_nodes: int


@dataclass(frozen=True)
class AutoscalingHead:
    address: str
    port: int


@contextmanager
def autoscaling_cluster(
    workers: list[WorkerType], config_dir: Path, idle_timeout_s: float
) -> Iterator[AutoscalingHead]:
    """A head of 2 CPUs and no GPU whose autoscaler adds and removes nodes of `workers`' types."""
    port = _free_port()
    ip = _node_ip()
    node_types: dict[str, object] = {
        "ray.head.default": {"resources": {"CPU": 2}, "node_config": {}, "max_workers": 0},
    }
    for worker in workers:
        node_types[worker.gpu_class] = {
            "resources": {"CPU": 1, "GPU": 1, class_resource(worker.gpu_class): 1},
            "labels": {
                DECLARED_LABEL: encode_declared((worker.gpu,)),
                DECLARED_RAM_LABEL: str(worker.ram_gb),
            },
            "node_config": {},
            "min_workers": 0,
            "max_workers": worker.max_nodes,
        }
    config = {
        "cluster_name": "wanfarm-test",
        "max_workers": sum(w.max_nodes for w in workers),
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": idle_timeout_s / 60,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": f"{ip}:{port}",  # else the provider's nodes look for a head on 6379
        },
        "head_node_type": "ray.head.default",
        "available_node_types": node_types,
        "docker": {},
        "auth": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "rsync_exclude": [],
        "rsync_filter": [],
    }
    path = config_dir / "autoscaler.json"
    path.write_text(json.dumps(config))
    bin_dir = str(Path(sys.executable).parent)
    env = dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        AUTOSCALER_UPDATE_INTERVAL_S="1",
        RAY_FAKE_CLUSTER="1",
        # A token left by an earlier local Ray would turn token authentication on for this head;
        # the test's driver is on loopback and has no token to give.
        RAY_AUTH_MODE="disabled",
    )
    command = [
        f"{bin_dir}/ray",
        "start",
        "--head",
        f"--port={port}",
        f"--autoscaling-config={path}",
        "--num-cpus=2",
        "--num-gpus=0",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=120)
    try:
        yield AutoscalingHead(f"{ip}:{port}", port)
    finally:
        stop_cluster(port)


def class_nodes(gpu_class: str) -> int:
    """Live nodes advertising the class's resource, as the driver's Ray sees them."""
    import ray

    resource = class_resource(gpu_class)
    return sum(1 for node in ray.nodes() if node.get("Alive") and resource in node.get("Resources", {}))


def stop_cluster(port: int) -> None:
    """Stop every process of the cluster whose head listens on `port`: the head's, its autoscaler's
    simulated nodes' and their workers' (each names the head's address on its command line)."""
    names_port = re.compile(rf"[:=]{port}(\D|$)")
    procs = [
        proc
        for proc in psutil.process_iter(["pid", "cmdline"])
        if proc.pid != os.getpid() and any(names_port.search(arg) for arg in proc.info["cmdline"] or [])
    ]
    for proc in procs:
        with suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=10)
    for proc in alive:
        with suppress(psutil.NoSuchProcess):
            proc.kill()


def wait_for(condition: object, timeout_s: float, what: str) -> float:
    """Seconds until `condition()` held; TimeoutError naming `what` past `timeout_s`."""
    assert callable(condition)
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"gave up waiting for {what} after {timeout_s:.0f} s")
        time.sleep(0.25)
    return time.monotonic() - start


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        port: int = sock.getsockname()[1]
        return port


def _node_ip() -> str:
    from ray._private.services import get_node_ip_address

    return str(get_node_ip_address())
