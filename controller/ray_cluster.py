"""Every Ray call of the farm, behind one thin wrapper.

The controller's logic talks to `Cluster` (nodes, agents, and calls on many agents at once) and
`AgentHandle` (one agent's fire-and-forget calls); unit tests substitute tests/unit/fake_cluster.py,
and the integration tests prove this wrapper on a real cluster. A batch call waits once for all its
agents; an agent that has died or stays silent is reported as AgentLost without failing the others.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import ray
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from gpu_agent.agent import GpuAgent
from gpu_agent.messages import AgentConfig, AgentEvent, AgentInventory, RenderTask
from models.catalogue import MODELS_ENV
from scheduler.demand import CLASS_RESOURCE_PREFIX

NAMESPACE = "wanfarm"
DECLARED_LABEL = "wanfarm.io/declared-gpus"
DECLARED_RAM_LABEL = "wanfarm.io/declared-ram-gb"
CALL_TIMEOUT_S = 30.0
# An agent answers events/cancel while it renders on its own thread.
AGENT_CONCURRENCY = 4
T = TypeVar("T")


class AgentLost(RuntimeError):
    """The agent's actor is gone (killed, crashed, or its node left)."""


class AgentSilent(AgentLost):
    """The agent did not answer within the call's timeout (hung, its node unreachable, or still
    starting)."""


@dataclass(frozen=True)
class NodeInfo:
    """A live Ray node and the GPUs it offers: real (`gpus`) or declared by GPU-table name."""

    node_id: str
    hostname: str
    gpus: int
    declared: tuple[str, ...]
    declared_ram_gb: float | None = None  # RAM a declared node offers, when not the machine's own
    gpu_class: str | None = None  # the autoscaler's class its GPUs belong to (scheduler.demand)
    node_name: str = ""  # Ray's node name (`ray start --node-name`), else its hostname


class AgentHandle:
    """One agent actor: fire-and-forget calls here; calls that answer go through Cluster's batches."""

    def __init__(self, actor: Any, agent_id: str) -> None:
        self._actor = actor
        self.agent_id = agent_id

    def prefetch(self, model_id: str) -> None:
        # Fire and forget: the next inventory shows the model cached.
        self._actor.prefetch.remote(model_id)

    def kill(self) -> None:
        ray.kill(self._actor, no_restart=True)

    def remote(self, method: str, *args: Any) -> ray.ObjectRef:
        """Send one call; its answer is read by `Cluster`'s batch calls."""
        return getattr(self._actor, method).remote(*args)


@dataclass(frozen=True)
class Answers(Generic[T]):
    """One batch call's results by key: each answer, and each call whose agent is lost."""

    answered: dict[str, T] = field(default_factory=dict)
    lost: dict[str, AgentLost] = field(default_factory=dict)


@dataclass(frozen=True)
class EventPoll:
    """Read an agent's events after `after_seq`."""

    handle: AgentHandle
    after_seq: int


@dataclass(frozen=True)
class TaskStart:
    handle: AgentHandle
    task: RenderTask


@dataclass(frozen=True)
class TaskCancel:
    handle: AgentHandle
    job_id: str
    attempt: int


@dataclass(frozen=True)
class TaskPreempt:
    """Stop an attempt at its next step boundary (`GpuAgent.preempt`)."""

    handle: AgentHandle
    job_id: str
    attempt: int


RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def _quiet_default_token_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


class Cluster:
    """The Ray cluster the farm runs on."""

    def __init__(self, address: str | None = None, local_gpus: tuple[str, ...] = ()) -> None:
        """Join the cluster at `address`, or start a local one whose node declares `local_gpus`."""
        # Inventory calls an agent has not answered yet (a starting agent), waited for again next time.
        self._unanswered: dict[str, ray.ObjectRef | None] = {}
        if ray.is_initialized():
            return
        if address:
            ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING)
            return
        labels = {DECLARED_LABEL: encode_declared(local_gpus)} if local_gpus else None
        # A new local cluster keeps Ray's default, token authentication, without Ray's notice of that
        # default on every start (it names nothing to do); a mode the user set is Ray's to report.
        logging.getLogger(RAY_AUTH_LOGGER).addFilter(_quiet_default_token_notice)
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
                found.append(
                    NodeInfo(
                        node["NodeID"],
                        hostname,
                        gpus,
                        declared,
                        float(ram) if ram else None,
                        gpu_class=_gpu_class(node.get("Resources", {})),
                        node_name=_node_name(node.get("NodeName", ""), hostname),
                    )
                )
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
            runtime_env=_agent_env(),
        ).remote(config)
        return AgentHandle(actor, config.agent_id)

    def inventories(
        self, handles: Iterable[AgentHandle], timeout_s: float = CALL_TIMEOUT_S
    ) -> Answers[AgentInventory]:
        """Every agent's inventory, by agent id, asked of all at once."""
        handles = list(handles)
        # A starting agent answers its first call once its imports are done: a call it left silent
        # is waited for again, not sent anew, so a short wait each refresh finds it as soon as it can.
        refs = {h.agent_id: self._unanswered.pop(h.agent_id, None) or h.remote("inventory") for h in handles}
        answers = _gather(refs, _names(handles), timeout_s)
        for agent_id, error in answers.lost.items():
            if isinstance(error, AgentSilent):
                self._unanswered[agent_id] = refs[agent_id]
        return answers

    def events(self, polls: Iterable[EventPoll]) -> Answers[list[AgentEvent]]:
        """Each agent's new events, by agent id, asked of all at once."""
        polls = list(polls)
        refs = {p.handle.agent_id: p.handle.remote("events", p.after_seq) for p in polls}
        return _gather(refs, _names(p.handle for p in polls))

    def start_tasks(self, starts: Iterable[TaskStart]) -> Answers[bool]:
        """Hand each task to its agent; by job id, whether the agent took it (False: it is busy)."""
        starts = list(starts)
        refs = {s.task.job_id: s.handle.remote("start", s.task) for s in starts}
        return _gather(refs, {s.task.job_id: s.handle.agent_id for s in starts})

    def cancel_tasks(self, cancels: Iterable[TaskCancel]) -> Answers[None]:
        """Pass each cancel request to its agent, by job id."""
        cancels = list(cancels)
        refs = {c.job_id: c.handle.remote("cancel", c.job_id, c.attempt) for c in cancels}
        return _gather(refs, {c.job_id: c.handle.agent_id for c in cancels})

    def preempt_tasks(self, preempts: Iterable[TaskPreempt]) -> Answers[None]:
        """Ask each agent to stop its attempt at the next step boundary, by job id."""
        preempts = list(preempts)
        refs = {p.job_id: p.handle.remote("preempt", p.job_id, p.attempt) for p in preempts}
        return _gather(refs, {p.job_id: p.handle.agent_id for p in preempts})

    def request_gpus(self, wanted: Mapping[str, int]) -> None:
        """Ask Ray's autoscaler for this many units of each class resource in all (the GPUs in use
        included): it adds nodes of the classes short of them; nodes no request needs may go once idle."""
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[{resource: 1} for resource, count in wanted.items() for _ in range(count)])

    def shutdown(self) -> None:
        ray.shutdown()


def _gather(
    refs: dict[str, ray.ObjectRef], agents: dict[str, str], timeout_s: float = CALL_TIMEOUT_S
) -> Answers[Any]:
    """Wait once for every call; one lost agent (died or silent past the timeout) fails only its own."""
    if not refs:
        return Answers()
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
    if len(ready) == len(refs):
        try:  # the usual round: every agent answered, read in one call
            return Answers(dict(zip(refs, ray.get(list(refs.values())), strict=True)))
        except RayActorError:
            pass  # some agent died: read them one by one to know which
    done = set(ready)
    answers: Answers[Any] = Answers()
    for key, ref in refs.items():
        if ref not in done:
            answers.lost[key] = AgentSilent(f"agent {agents[key]}: no answer within {timeout_s:.0f} s")
            continue
        try:
            answers.answered[key] = ray.get(ref)
        except RayActorError as error:
            answers.lost[key] = AgentLost(f"agent {agents[key]}: {type(error).__name__}: {error}")
    return answers


def _gpu_class(resources: Mapping[str, float]) -> str | None:
    """The class a node's resources name (`wanfarm_class_<name>`), as its worker group spells it."""
    for resource in resources:
        if resource.startswith(CLASS_RESOURCE_PREFIX):
            return resource.removeprefix(CLASS_RESOURCE_PREFIX).replace("_", "-")
    return None


def _node_name(name: str, hostname: str) -> str:
    # Ray names a node by its IP address unless told otherwise: the hostname says more.
    return name if name and not _is_address(name) else hostname


def _is_address(name: str) -> bool:
    return all(part.isdigit() for part in name.split(".")) or ":" in name


def _names(handles: Iterable[AgentHandle]) -> dict[str, str]:
    return {h.agent_id: h.agent_id for h in handles}


def actor_name(agent_id: str) -> str:
    return f"wanfarm-agent-{agent_id}"


def encode_declared(gpus: tuple[str, ...]) -> str:
    """GPU names as a node label value: "RTX 3060", "RTX 4090" -> "RTX-3060_RTX-4090"."""
    return "_".join(name.replace(" ", "-") for name in gpus)


def decode_declared(value: str) -> tuple[str, ...]:
    return tuple(part.replace("-", " ") for part in value.split("_") if part)


def _agent_env() -> dict[str, Any] | None:
    # Agents serve the controller's WanGP definitions: its models folder (a shared volume on a
    # cluster), which definitions added over REST are written to.
    folder = os.environ.get(MODELS_ENV)
    return {"env_vars": {MODELS_ENV: folder}} if folder else None
