"""A home lab on one machine, as docs/home-lab.md walks it through: a Ray head started with
`ray start --head` and token authentication on, two PCs added with `wanfarm join` (declared GPUs),
the farm served by `wanfarm up --ray-address`, a node drained mid-job with `wanfarm drain`, and
nodes removed with `wanfarm leave`. Every command runs as the user runs it: a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from controller.cli.client import FarmClient
from controller.cli.node_processes import is_running
from controller.cli.node_state import JoinedNode, load_joined
from tests.integration.farm_helpers import wait_until
from tests.integration.ray_head import TokenHead, clean_env, free_port, token_head

NOWHERE = "http://127.0.0.1:9"  # no farm answers there
# A driver's view of the cluster through the farm's own wrapper, and the environment a task on the
# joined node sees (where its agents would cache weights).
INSPECT = """
import json, os, sys
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from controller.ray_cluster import Cluster
cluster = Cluster(sys.argv[1])
nodes = {n.node_name: {"node_id": n.node_id, "declared": list(n.declared), "ram": n.declared_ram_gb,
         "gpu_class": n.gpu_class, "gpus": n.gpus} for n in cluster.nodes()}
env = None
if sys.argv[2] in nodes:
    @ray.remote(num_cpus=1)
    def cache():
        return os.environ.get("WANFARM_CACHE")
    place = NodeAffinitySchedulingStrategy(nodes[sys.argv[2]]["node_id"], soft=False)
    env = ray.get(cache.options(scheduling_strategy=place).remote(), timeout=120)
print(json.dumps({"nodes": nodes, "cache": env}))
"""


@dataclass(frozen=True)
class Lab:
    head: TokenHead
    homes: dict[str, Path]  # node name -> its $WANFARM_HOME
    caches: dict[str, Path]


@pytest.fixture(scope="module")
def head() -> Iterator[TokenHead]:
    with token_head(num_cpus=1) as running:
        yield running


@pytest.fixture(scope="module")
def lab(head: TokenHead, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    root = tmp_path_factory.mktemp("lab")
    homes = {name: root / name / "wanfarm" for name in ("lab-a", "lab-b")}
    caches = {name: root / name / "weights" for name in homes}
    argv = {}
    for name, gpu in (("lab-a", "RTX 3060"), ("lab-b", "RTX 4090")):
        flags = ["--declare-gpu", gpu, "--ram-gb", "24", "--cache", str(caches[name]), "--gpu-class", "gpu12"]
        flags += ["--node-name", name, "--token-file", str(head.token_file), "--num-cpus", "1"]
        argv[name] = [sys.executable, "-m", "controller.cli", "join", head.address, *flags]

    def start(name: str) -> subprocess.Popen[str]:
        env = clean_env(WANFARM_HOME=str(homes[name]))
        return subprocess.Popen(
            argv[name], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    joins = {name: start(name) for name in argv}  # two PCs joining at once
    for name, process in joins.items():
        out, err = process.communicate(timeout=300)
        if process.returncode != 0 and "timed out during startup" in err:
            # Ray gives a new node a fixed 30 s to register; on a loaded CI machine (the other
            # test worker busy) its head may answer later: the user would run join again.
            out, err = start(name).communicate(timeout=300)
        assert f"joined {head.address} as {name}" in out, err[-3000:]
    return Lab(head, homes, caches)


@pytest.fixture(scope="module")
def farm(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`wanfarm up --ray-address` on the head, as the home lab's first PC runs it."""
    url = f"http://127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "controller.cli", "up", "--ray-address", lab.head.address]
    argv += ["--port", url.rpartition(":")[2], "--data-dir", str(tmp_path_factory.mktemp("farm"))]
    argv += ["--checkpoint-steps", "10"]
    process = subprocess.Popen(argv, env=lab.head.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    client = FarmClient(url)
    try:
        wait_until(lambda: _listed(client) >= 2, 240, "the two joined nodes' agents")
        yield url
    finally:
        client.close()
        process.terminate()
        process.wait(60)


def test_a_join_without_the_heads_token_is_refused_with_where_to_find_it(
    head: TokenHead, tmp_path: Path
) -> None:
    # No token anywhere: HOME without ~/.ray/auth_token, no RAY_AUTH_TOKEN(_PATH).
    bare = wanfarm(
        ["join", head.address, "--declare-gpu", "RTX 3060"], HOME=str(tmp_path), WANFARM_HOME=str(tmp_path)
    )
    assert bare.returncode == 1
    assert f"the Ray head at {head.address} checks tokens and this machine has none" in bare.stderr
    assert "ray get-auth-token" in bare.stderr and "--token-file" in bare.stderr
    wrong = tmp_path / "wrong-token"
    wrong.write_text("0" * 64)
    refused = wanfarm(["join", head.address, "--token-file", str(wrong)], WANFARM_HOME=str(tmp_path))
    assert refused.returncode == 1
    assert f"refused the token from {wrong}" in refused.stderr
    assert not (tmp_path / "node.json").exists()


def test_joined_nodes_offer_their_declared_gpus_class_and_cache(lab: Lab) -> None:
    seen = inspect(lab.head, "lab-a")
    assert seen["nodes"]["lab-a"] == {
        "node_id": joined(lab, "lab-a").node_id,
        "declared": ["RTX 3060"],
        "ram": 24.0,
        "gpu_class": "gpu12",
        "gpus": 1,
    }
    assert seen["nodes"]["lab-b"]["declared"] == ["RTX 4090"]
    assert seen["cache"] == str(lab.caches["lab-a"])  # the node's agents cache weights there
    # The token went to the node through its environment, never its command line.
    token = lab.head.token_file.read_text()
    for process in joined(lab, "lab-a").processes:
        assert token not in " ".join(psutil.Process(process.pid).cmdline())


def test_drain_a_node_its_agent_leaves_and_an_unknown_node_is_refused_naming_those_there(
    lab: Lab, farm: str
) -> None:
    # A job drained mid-way resumes elsewhere: tests/integration/test_autoscaling.py; here, the command.
    client = FarmClient(farm)
    agent = client.agents()[0]
    node = agent.node_name
    drained = wanfarm(["drain", node, "--wait", "--timeout", "180", "--server", farm])
    assert drained.returncode == 0, drained.stderr
    assert f"{agent.agent_id} on {node}: draining" in drained.stdout
    assert f"drained: {agent.agent_id}" in drained.stdout
    assert agent.agent_id not in [a.agent_id for a in client.agents()]  # --wait returned once it was gone

    unknown = wanfarm(["drain", "no-such-pc", "--server", farm])
    assert unknown.returncode == 2
    assert "no agent, node id, node name or hostname 'no-such-pc'" in unknown.stderr
    other = next(a.node_name for a in client.agents())
    assert f"name {other}" in unknown.stderr  # the nodes that are there
    client.close()


def test_leave_drains_and_stops_only_its_node(lab: Lab, farm: str) -> None:
    client = FarmClient(farm)
    busy = [name for name in lab.homes if any(a.node_name == name for a in client.agents())]
    assert len(busy) == 1  # the other node was drained by the test before
    [node] = busy
    before = joined(lab, node)

    # The farm out of reach: nothing is stopped unless forced.
    unreachable = wanfarm(["leave", "--server", NOWHERE], WANFARM_HOME=str(lab.homes[node]))
    assert unreachable.returncode == 1 and "leave --force" in unreachable.stderr
    assert all(is_running(p) for p in before.processes)

    left = wanfarm(["leave", "--server", farm, "--timeout", "120"], WANFARM_HOME=str(lab.homes[node]))
    assert left.returncode == 0, left.stderr
    assert "drained: " in left.stdout and f"stopped node {node}" in left.stdout
    assert not any(is_running(p) for p in before.processes)
    assert load_joined(lab.homes[node] / "node.json") is None
    assert node not in {a.node_name for a in client.agents()}

    other = next(name for name in lab.homes if name != node)
    joined_before = joined(lab, other)
    forced = wanfarm(["leave", "--server", NOWHERE, "--force"], WANFARM_HOME=str(lab.homes[other]))
    assert forced.returncode == 0 and f"stopped node {other}" in forced.stdout
    assert not any(is_running(p) for p in joined_before.processes)
    assert lab.head.alive()  # the head, on the same machine, was left alone
    client.close()


def wanfarm(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", *argv],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def inspect(head: TokenHead, task_node: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", INSPECT, head.address, task_node],
        env=head.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def joined(lab: Lab, name: str) -> JoinedNode:
    node = load_joined(lab.homes[name] / "node.json")
    assert node is not None
    return node


def _listed(client: FarmClient) -> int:
    try:
        return len(client.agents())
    except Exception:
        return 0
