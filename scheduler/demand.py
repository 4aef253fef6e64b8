"""Demand per GPU class: the queue as GPUs for an autoscaler to bring, and idle agents to let go.

Pure: the dispatcher hands in a placement's snapshot and decisions, controller/autoscale.py asks
Ray's autoscaler for the GPUs and releases the agents. A class is a kind of node the cluster can
add (a KubeRay worker group): nodes of class `gpu24` advertise the Ray resource
`wanfarm_class_gpu24`, one unit per GPU, so a request for that resource grows that group only.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from models.gpus import find_gpu
from scheduler.catalogue_lookup import CatalogueLookup
from scheduler.feasibility import choose_profile
from scheduler.snapshot import AgentView, Decisions, PendingJob, Snapshot, Waiting

GIB = 1024**3
CLASS_RESOURCE_PREFIX = "wanfarm_class_"
CLASS_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")  # a Kubernetes group name's shape


@dataclass(frozen=True)
class GpuClass:
    """A kind of node the autoscaler can add: its GPU, how many it may add, how soon agents leave."""

    name: str  # the worker group's name, e.g. "gpu24"
    gpu: str  # the GPU-table name its cards carry, e.g. "RTX 4090"
    max_gpus: int  # the most GPUs of this class the farm asks for (max replicas x GPUs per node)
    ram_gb: float = 64.0  # a node's RAM, for what fits under which memory profile
    gpus_per_node: int = 1
    # An idle agent exits after this long, freeing its GPU so the node can be removed; longer when
    # the model it holds hot was asked for again and again lately (loading it again costs minutes).
    idle_release_s: float = 300.0
    hot_release_s: float = 900.0

    def __post_init__(self) -> None:
        if not CLASS_NAME.match(self.name):
            raise ValueError(f"GPU class name {self.name!r}: use lower-case letters, digits and '-'")
        find_gpu(self.gpu)  # UnknownGpu names the table's cards
        if self.max_gpus < 0 or self.gpus_per_node < 1:
            raise ValueError(f"GPU class {self.name}: max_gpus >= 0 and gpus_per_node >= 1")
        if not 0 < self.idle_release_s <= self.hot_release_s:
            raise ValueError(f"GPU class {self.name}: 0 < idle_release_s <= hot_release_s")

    @property
    def resource(self) -> str:
        """The Ray resource its nodes advertise, one unit per GPU."""
        return class_resource(self.name)


@dataclass(frozen=True)
class ScalingRules:
    """The classes, cheapest first, and how the queue turns into demand."""

    classes: tuple[GpuClass, ...]
    # A job the scheduler expects to finish within this on an agent up now asks for no new GPU: a
    # node takes about this long to come up and load a model.
    scale_up_s: float = 180.0
    # A model started this often within the window keeps its idle hot agent for hot_release_s.
    hot_starts: int = 2
    hot_window_s: float = 1800.0

    def of(self, name: str | None) -> GpuClass | None:
        return next((c for c in self.classes if c.name == name), None)


@dataclass(frozen=True)
class ClassDemand:
    """One class as the autoscaler is asked for it: agents up, jobs asking, GPUs wanted."""

    gpu_class: str
    busy: int  # its agents running a job
    idle: int  # its agents up and idle
    waiting: int  # queued jobs that ask this class for a GPU
    wanted: int  # GPUs asked of the autoscaler: busy + waiting, at most the class's max_gpus
    max_gpus: int


@dataclass(frozen=True)
class Release:
    """Let an idle agent exit: its GPU is free, and its node can be removed once idle."""

    agent_id: str
    gpu_class: str
    idle_s: float
    reason: str


def class_demand(
    snapshot: Snapshot,
    decisions: Decisions,
    agent_classes: Mapping[str, str],
    rules: ScalingRules,
    lookup: CatalogueLookup,
    drained: Mapping[str, int] | None = None,
) -> tuple[ClassDemand, ...]:
    """GPUs per class for the queue: each queued job that no agent up now will finish within
    `scale_up_s` asks the cheapest class that can run it (fastest profile that fits) for one GPU.

    `drained`: GPUs per class whose agents were drained while their nodes are still up. The
    autoscaler counts every node's GPUs, used or not, against a request: while jobs ask the class,
    those GPUs are asked for on top, else an idle drained node would seem to serve them."""
    busy = dict.fromkeys((c.name for c in rules.classes), 0)
    idle = dict(busy)
    assigned = {a.agent_id for a in decisions.assignments}
    for agent in snapshot.agents:
        name = agent_classes.get(agent.agent_id)
        if name in busy:
            if agent.idle and agent.agent_id not in assigned:
                idle[name] += 1
            else:
                busy[name] += 1
    etas = {wait.job_id: wait.eta for wait in decisions.waiting}
    started = {a.job_id for a in decisions.assignments}
    asking = dict.fromkeys(busy, 0)
    views = {c.name: class_view(c) for c in rules.classes}
    for job in snapshot.pending:
        if job.job_id in started:
            continue
        eta = etas.get(job.job_id)
        if eta is not None and eta - snapshot.now <= rules.scale_up_s:
            continue
        name = _cheapest_able(job, rules.classes, views, lookup)
        if name is not None:
            asking[name] += 1
    gone = drained or {}
    return tuple(
        ClassDemand(
            c.name,
            busy[c.name],
            idle[c.name],
            asking[c.name],
            min(c.max_gpus, busy[c.name] + asking[c.name] + (gone.get(c.name, 0) if asking[c.name] else 0)),
            c.max_gpus,
        )
        for c in rules.classes
    )


def class_waits(
    pending: Sequence[PendingJob], rules: ScalingRules, lookup: CatalogueLookup
) -> tuple[Waiting, ...]:
    """Why each job waits while no agent is up at all: the class whose new node it waits for."""
    views = {c.name: class_view(c) for c in rules.classes}
    waits = []
    for job in pending:
        name = _cheapest_able(job, rules.classes, views, lookup)
        gpu_class = rules.of(name)
        reason = (
            f"waiting for a new node of GPU class {gpu_class.name} ({gpu_class.gpu}): the autoscaler adds it"
            if gpu_class is not None
            else "no agent is up, and no GPU class of this farm can run it"
        )
        waits.append(Waiting(job.job_id, reason))
    return tuple(waits)


def releases(
    agents: Sequence[AgentView],
    agent_classes: Mapping[str, str],
    idle_since: Mapping[str, float],
    recent_starts: Sequence[tuple[str, float]],
    demand: Collection[ClassDemand],
    rules: ScalingRules,
    now: float,
) -> tuple[Release, ...]:
    """Idle agents of a class past their idle timeout, except where the class's own queue asks for
    GPUs (an agent up now is sooner than any new node)."""
    asked = {d.gpu_class for d in demand if d.waiting}
    window_start = now - rules.hot_window_s
    starts: dict[str, int] = {}
    for model_id, at in recent_starts:
        if at >= window_start:
            starts[model_id] = starts.get(model_id, 0) + 1
    out = []
    for agent in agents:
        gpu_class = rules.of(agent_classes.get(agent.agent_id))
        since = idle_since.get(agent.agent_id)
        if gpu_class is None or since is None or not agent.idle or gpu_class.name in asked:
            continue
        hot = agent.hot_model is not None and starts.get(agent.hot_model, 0) >= rules.hot_starts
        timeout = gpu_class.hot_release_s if hot else gpu_class.idle_release_s
        idle_s = now - since
        if idle_s >= timeout:
            held = f", {agent.hot_model} hot and asked for lately" if hot else ""
            out.append(Release(agent.agent_id, gpu_class.name, idle_s, f"idle {idle_s:.0f} s{held}"))
    return tuple(out)


def class_view(gpu_class: GpuClass) -> AgentView:
    """An agent of the class as it would be once its node is up: the GPU table's card, the class's RAM."""
    spec = find_gpu(gpu_class.gpu)
    ram = int(gpu_class.ram_gb * GIB)
    return AgentView(
        agent_id=f"class:{gpu_class.name}",
        node_id="",
        gpu_name=spec.name,
        arch=spec.arch,
        capability=spec.capability,
        vram_total=spec.vram_bytes,
        vram_free=spec.vram_bytes,
        ram_total=ram,
        ram_free=ram,
        disk_free=2**50,
        half_tflops=spec.half_tflops,
    )


def class_resource(name: str) -> str:
    return CLASS_RESOURCE_PREFIX + name.replace("-", "_")


def _cheapest_able(
    job: PendingJob, classes: Sequence[GpuClass], views: Mapping[str, AgentView], lookup: CatalogueLookup
) -> str | None:
    preset = lookup.preset(job.work.model_id)
    if preset is None:
        return None
    for gpu_class in classes:
        if (
            gpu_class.max_gpus
            and choose_profile(preset, job.work, views[gpu_class.name], job.overrides) is not None
        ):
            return gpu_class.name
    return None
