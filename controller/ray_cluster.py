"""Every Ray call of the farm, behind one thin wrapper.

The controller's logic talks to `Cluster` (nodes, agents) and `AgentHandle` (calls on one agent);
unit tests substitute fakes, and the integration tests prove this wrapper on a real cluster.
A call to an agent that has died raises AgentLost, whatever Ray's own error was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from gpu_agent.agent import GpuAgent
from gpu_agent.messages import AgentConfig, AgentEvent, AgentInventory, RenderTask

NAMESPACE = "wanfarm"
DECLARED_LABEL = "wanfarm.io/declared-gpus"
DECLARED_RAM_LABEL = "wanfarm.io/declared-ram-gb"
CALL_TIMEOUT_S = 30.0
# An agent answers events/cancel while it renders on its own thread.
AGENT_CONCURRENCY = 4


class AgentLost(RuntimeError):
    """The agent's actor is gone (killed, crashed, or its node left)."""


@dataclass(frozen=True)
class NodeInfo:
    """A live Ray node and the GPUs it offers: real (`gpus`) or declared by GPU-table name."""

    node_id: str
    hostname: str
    gpus: int
    declared: tuple[str, ...]
    declared_ram_gb: float | None = None  # RAM a declared node offers, when not the machine's own


class AgentHandle:
    """Calls on one agent actor, each with a timeout; errors become AgentLost."""

    def __init__(self, actor: Any, agent_id: str) -> None:
        self._actor = actor
        self.agent_id = agent_id

    def inventory(self) -> AgentInventory:
        result: AgentInventory = self._call("inventory")
        return result

    def start(self, task: RenderTask) -> bool:
        result: bool = self._call("start", task)
        return result

    def events(self, after_seq: int) -> list[AgentEvent]:
        result: list[AgentEvent] = self._call("events", after_seq)
        return result

    def cancel(self, job_id: str, attempt: int) -> None:
        self._call("cancel", job_id, attempt)

    def prefetch(self, model_id: str) -> None:
        # Fire and forget: the next inventory shows the model cached.
        self._actor.prefetch.remote(model_id)

    def kill(self) -> None:
        ray.kill(self._actor, no_restart=True)

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return ray.get(getattr(self._actor, method).remote(*args), timeout=CALL_TIMEOUT_S)
        except (RayActorError, GetTimeoutError) as error:
            raise AgentLost(f"agent {self.agent_id}: {type(error).__name__}: {error}") from None


class Cluster:
    """The Ray cluster the farm runs on."""

    def __init__(self, address: str | None = None, local_gpus: tuple[str, ...] = ()) -> None:
        """Join the cluster at `address`, or start a local one whose node declares `local_gpus`."""
        if ray.is_initialized():
            return
        if address:
            ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING)
            return
        labels = {DECLARED_LABEL: encode_declared(local_gpus)} if local_gpus else None
        ray.init(
            address="local",  # a new local cluster, never one that happens to run on this machine
            namespace=NAMESPACE,
            num_gpus=len(local_gpus) or None,
            labels=labels,
            include_dashboard=False,
            logging_level=logging.WARNING,
        )

    def nodes(self) -> list[NodeInfo]:
        """Live nodes with GPUs (fake GPU resources count when the node declares its cards)."""
        found = []
        for node in ray.nodes():
            if not node.get("Alive"):
                continue
            labels = node.get("Labels") or {}
            declared = decode_declared(labels.get(DECLARED_LABEL, ""))
            gpus = int(node.get("Resources", {}).get("GPU", 0))
            if gpus or declared:
                ram = labels.get(DECLARED_RAM_LABEL)
                hostname = node.get("NodeManagerHostname", "")
                found.append(NodeInfo(node["NodeID"], hostname, gpus, declared, float(ram) if ram else None))
        return found

    def find_agent(self, agent_id: str) -> AgentHandle | None:
        """The named actor of an agent if it exists (e.g. after a controller restart)."""
        try:
            return AgentHandle(ray.get_actor(actor_name(agent_id), namespace=NAMESPACE), agent_id)
        except ValueError:
            return None

    def start_agent(self, config: AgentConfig) -> AgentHandle:
        """Create the agent's actor on its node, holding one GPU and no CPU; it outlives the controller."""
        actor_class = ray.remote(GpuAgent)
        actor = actor_class.options(
            name=actor_name(config.agent_id),
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_gpus=1,
            num_cpus=0,
            max_concurrency=AGENT_CONCURRENCY,
            scheduling_strategy=NodeAffinitySchedulingStrategy(config.node_id, soft=False),
        ).remote(config)
        return AgentHandle(actor, config.agent_id)

    def shutdown(self) -> None:
        ray.shutdown()


def actor_name(agent_id: str) -> str:
    return f"wanfarm-agent-{agent_id}"


def encode_declared(gpus: tuple[str, ...]) -> str:
    """GPU names as a node label value: "RTX 3060", "RTX 4090" -> "RTX-3060_RTX-4090"."""
    return "_".join(name.replace(" ", "-") for name in gpus)


def decode_declared(value: str) -> tuple[str, ...]:
    return tuple(part.replace("-", " ") for part in value.split("_") if part)
