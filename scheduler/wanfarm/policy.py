"""The wanfarm policy, the farm's default: earliest finish with learned speed and memory, fair share
and aging.

It decides from each snapshot and learns only in `observe` (render speed, memory need, each owner's
GPU time). A round orders the queue (fair_share), then places its head (placement_round) on a pool
index kept across rounds (pool_index); placements fit the learned memory need with a safety margin.
Design: docs/scheduler.md.
"""

from __future__ import annotations

from collections.abc import Callable

from models.catalogue import ModelPreset, get_model
from scheduler.catalogue_lookup import CatalogueLookup
from scheduler.preemption import PreemptionRule, with_preemptions
from scheduler.snapshot import AgentView, Decisions, Observation, PendingJob, Snapshot
from scheduler.wanfarm.fair_share import SIZE_SHARE, ServiceLedger, effective_priority, order_queue, standing
from scheduler.wanfarm.job_shapes import JobShape, RoundShapes
from scheduler.wanfarm.learning import MemoryModel, SpeedModel
from scheduler.wanfarm.placement_round import DownloadCost, PlacementRound
from scheduler.wanfarm.pool_index import KeptPoolIndex

HEAD_PER_AGENT = 4  # jobs placed (or reserved) per agent each round; the rest only get an ETA
MIN_HEAD = 200
# From this many agents the queue is short beside the pool and most jobs start as they come: ordering
# it by size no longer cuts waits, it only decides who gets the fastest free card, and the big jobs
# (the p95) lose it. Such a pool queues by priority and submit time alone (docs/scheduler.md).
LARGE_POOL = 500
DEFAULT_PREEMPTION = PreemptionRule()
BEHIND_SHARE = 0.5  # an owner with less than this share of the mean service is behind: no waiting


class WanfarmPolicy:
    """Earliest finish over hot/cached/fastest agents, learning from every finished job."""

    name = "wanfarm"
    downloads = DownloadCost()  # a download costs its time, and idle agents copy what queues up

    def __init__(
        self,
        presets: Callable[[str], ModelPreset] = get_model,
        preemption: PreemptionRule | None = DEFAULT_PREEMPTION,
    ) -> None:
        self.catalogue = CatalogueLookup(presets)
        self.preemption = preemption  # None: a queued job never stops a running one
        self.speed = SpeedModel()
        self.memory = MemoryModel(self.catalogue)
        self.ledger = ServiceLedger()
        self.kept_pool = KeptPoolIndex()  # re-reads only the agents that changed since the last round
        self.handed_out: dict[str, float] = {}  # agent id -> when its latest job was assigned

    def observe(self, observation: Observation) -> None:
        """Correct speed and memory for the (model, GPU) and charge the owner the GPU time."""
        if observation.owner is not None:
            self.ledger.record(
                observation.owner,
                observation.render_seconds + observation.load_seconds,
                observation.finished_at,
            )
        preset = self.catalogue.preset(observation.work.model_id)
        if preset is None:
            return
        self.speed.observe(preset, observation)
        self.memory.observe(preset, observation)

    def place(self, snapshot: Snapshot) -> Decisions:
        """Assignments for jobs whose best agent is free now; every other job waits with an ETA or why."""
        if not snapshot.pending:
            return Decisions()
        pool = self.kept_pool.index(snapshot.agents, snapshot.now)
        shapes = RoundShapes(pool.classes, self.catalogue, self.speed, self.memory)
        # A running job counts whole (its estimate) until it finishes and the ledger takes it over;
        # counting only what remains would make its owner look less served the longer it runs.
        in_flight: dict[str, float] = {}
        handed_out, now = self.handed_out, snapshot.now
        for agent in snapshot.agents:
            if agent.running_owner is not None and agent.busy_until is not None:
                granted = max(0.0, agent.busy_until - min(handed_out.get(agent.agent_id, now), now))
                in_flight[agent.running_owner] = in_flight.get(agent.running_owner, 0.0) + granted

        def service(owner: str) -> float:
            return self.ledger.service(owner, snapshot.now) + in_flight.get(owner, 0.0)

        def weight(job: PendingJob) -> float:
            shape = shapes.shape(job)
            return 0.0 if shape is None else shape.mean_render_s

        head = max(HEAD_PER_AGENT * len(snapshot.agents), MIN_HEAD)
        size_share = 0.0 if len(snapshot.agents) >= LARGE_POOL else SIZE_SHARE
        order = order_queue(snapshot.pending, snapshot.now, service, weight, head, size_share)
        decisions = PlacementRound(pool, shapes, _behind(order.head, service), self.downloads).run(order)
        for assignment in decisions.assignments:
            handed_out[assignment.agent_id] = assignment.est_start
        if self.preemption is None:
            return decisions
        position, class_of = pool.position, pool.class_of
        known: dict[tuple[int, str], float | None] = {}  # (shape, agent): jobs of a shape share them

        def finish_on(job: PendingJob, agent: AgentView) -> float | None:
            # As placement estimates it: the agent's class among the shape's options, its load by
            # what the agent holds once its running job stops (that job's model stays hot).
            shape, at = shapes.shape(job), position.get(agent.agent_id)
            if shape is None or at is None:
                return None
            key = (id(shape), agent.agent_id)
            if key not in known:
                known[key] = _finish_on(shape, job.work.model_id, agent, class_of[at], now)
            return known[key]

        def queued_before(agent: AgentView, job: PendingJob) -> bool:
            # A stopped job queues again with its own submit time: aged past the waiting job's
            # standing, it would take the agent straight back.
            submitted = agent.running_submitted_at
            if submitted is None or agent.running_priority is None:
                return False
            return standing(agent.running_priority, submitted, now) >= effective_priority(job, now)

        chosen = self.preemption.choose(snapshot, decisions, finish_on, queued_before)
        return with_preemptions(decisions, chosen)


class FrugalWanfarmPolicy(WanfarmPolicy):
    """wanfarm for a farm whose bytes cost: a download must save eight times its own time over waiting
    for an agent that holds the model, and nothing is copied ahead of the jobs."""

    name = "wanfarm-frugal"
    downloads = DownloadCost(charge=8.0, prefetch=False)


class SteadyWanfarmPolicy(WanfarmPolicy):
    """wanfarm without preemption: a running job always runs to its end (for comparison)."""

    name = "wanfarm-no-preempt"

    def __init__(self, presets: Callable[[str], ModelPreset] = get_model) -> None:
        super().__init__(presets, preemption=None)


def _finish_on(
    shape: JobShape, model_id: str, agent: AgentView, class_index: int, now: float
) -> float | None:
    option = next((o for o in shape.options if o.class_index == class_index), None)
    if option is None:
        return None
    if (agent.running_model or agent.hot_model) == model_id:
        load = 0.0
    elif model_id in agent.cached_models:
        load = shape.weight_bytes / agent.disk_bytes_per_s
    else:
        load = shape.weight_bytes * (1.0 / agent.net_bytes_per_s + 1.0 / agent.disk_bytes_per_s)
    return now + load + option.render_s


def _behind(head: tuple[PendingJob, ...], service: Callable[[str], float]) -> frozenset[str]:
    # Owners of queued jobs whose service is under BEHIND_SHARE of their mean.
    served = {owner: service(owner) for owner in {job.owner for job in head}}
    if len(served) < 2:
        return frozenset()
    bar = BEHIND_SHARE * sum(served.values()) / len(served)
    return frozenset(owner for owner, value in served.items() if value < bar)
