"""Autoscaling's mechanism: ask Ray's autoscaler for the queue's GPUs per class, let idle agents go.

Each placement hands its snapshot and decisions to `Autoscaler.round`; scheduler.demand decides
(GPUs wanted per class, idle agents past their timeout), this applies: `Cluster.request_gpus` when the
figures change (and every REQUEST_EVERY_S, should the autoscaler have restarted), the registry's
release of each idle agent, and the restore of a class's released agents once its queue asks again
(an agent on a node still up is sooner than a new node). KubeRay's autoscaler, or Ray's own, then
adds nodes of the classes short of GPUs and removes nodes idle past its own timeout.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from controller.metrics import FarmMetrics
from controller.ray_cluster import Cluster
from controller.registry import AgentRegistry
from scheduler.catalogue_lookup import CatalogueLookup
from scheduler.demand import ClassDemand, ScalingRules, class_demand, class_waits, releases
from scheduler.snapshot import Decisions, Snapshot, Waiting

log = logging.getLogger(__name__)
REQUEST_EVERY_S = 30.0
RECENT_STARTS = 10_000  # attempts remembered for the hot-model rule, at most


class Autoscaler:
    def __init__(
        self,
        cluster: Cluster,
        registry: AgentRegistry,
        rules: ScalingRules,
        metrics: FarmMetrics,
        lookup: CatalogueLookup | None = None,
    ) -> None:
        self.cluster = cluster
        self.registry = registry
        self.rules = rules
        self.metrics = metrics
        self.lookup = lookup or CatalogueLookup()
        self.demand: tuple[ClassDemand, ...] = tuple(
            ClassDemand(c.name, 0, 0, 0, 0, c.max_gpus) for c in rules.classes
        )
        self.released = 0  # agents let go since start, idle or drained
        self._asked: dict[str, int] | None = None  # the last request, by class resource
        self._asked_at = -REQUEST_EVERY_S
        self._idle_since: dict[str, float] = {}
        self._starts: deque[tuple[str, float]] = deque(maxlen=RECENT_STARTS)

    def round(self, snapshot: Snapshot, decisions: Decisions) -> None:
        """Demand from this placement, asked of Ray's autoscaler; idle agents past their time let go."""
        now = snapshot.now
        classes = self.registry.agent_classes()
        models = {job.job_id: job.work.model_id for job in snapshot.pending}
        self._starts.extend((models[a.job_id], now) for a in decisions.assignments if a.job_id in models)
        # Idle: no job at all, not even one that has left the GPU and is still encoding or uploading
        # (the policy sees such an agent as free for the next job, but it must not exit yet).
        holding = {
            e.inventory.agent_id
            for e in self.registry.entries()
            if e.inventory.current_job is not None or e.inventory.previous_job is not None
        }
        assigned = {a.agent_id for a in decisions.assignments}
        self._idle_since = {
            agent.agent_id: self._idle_since.get(agent.agent_id, now)
            for agent in snapshot.agents
            if agent.idle and agent.agent_id not in assigned and agent.agent_id not in holding
        }
        drained: dict[str, int] = {}
        for held in self.registry.held():
            if held.reason == "drained" and held.gpu_class is not None:
                drained[held.gpu_class] = drained.get(held.gpu_class, 0) + 1
        self.demand = class_demand(snapshot, decisions, classes, self.rules, self.lookup, drained)
        for demand in self.demand:
            if demand.waiting:
                for agent_id in self.registry.restore(demand.gpu_class):
                    log.info("agent %s starts again: its class %s is asked for", agent_id, demand.gpu_class)
        self._request({c.resource: d.wanted for c, d in zip(self.rules.classes, self.demand, strict=True)})
        for release in releases(
            snapshot.agents, classes, self._idle_since, tuple(self._starts), self.demand, self.rules, now
        ):
            log.info("releasing agent %s (%s): %s", release.agent_id, release.gpu_class, release.reason)
            self.registry.release(release.agent_id, "idle")
            self._idle_since.pop(release.agent_id, None)
            self.count_release(release.gpu_class, "idle")

    def waits(self, snapshot: Snapshot) -> tuple[Waiting, ...]:
        """Why each queued job waits while no agent is up: the class whose node it waits for."""
        return class_waits(snapshot.pending, self.rules, self.lookup)

    def count_release(self, gpu_class: str, reason: str) -> None:
        """An agent let go: "idle" past its timeout, or "drained"."""
        self.released += 1
        self.metrics.agents_released.labels(gpu_class, reason).inc()

    def _request(self, wanted: dict[str, int]) -> None:
        now = time.monotonic()
        if wanted == self._asked and now - self._asked_at < REQUEST_EVERY_S:
            return
        if wanted != self._asked:
            log.info("asking the autoscaler for %s", wanted)
        self.cluster.request_gpus(wanted)
        self._asked, self._asked_at = wanted, now
