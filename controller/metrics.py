"""The farm's Prometheus metrics: counters the dispatcher and service update, gauges read at scrape.

Each farm has its own `CollectorRegistry` (never the process-wide default), so several farms in one
process, as in the tests, keep separate figures. Agents' figures reach /metrics through the
controller, which already polls their inventories and reads their events: one scrape target, and
agents need no open port.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.store import JobStore
from gpu_agent.messages import AgentEvent, AgentInventory

AGENT_LABELS = ("agent", "node", "gpu_index", "gpu_model", "arch")
QUEUE_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600)
RENDER_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 2 * 3600)
# |submit ETA - finish| / latency: 0.25 is the farm's aim at the median for models it has seen.
ETA_ERROR_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10)
ROUND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
WEIGHT_SOURCES = ("hot", "disk", "download")


class FarmMetrics:
    """One farm's metrics; `attach` adds the scrape-time gauges over its store and agents."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs_submitted = Counter(
            "wanfarm_jobs_submitted", "Jobs accepted by the API.", ["model"], registry=r
        )
        self.jobs_retried = Counter(
            "wanfarm_jobs_retried",
            "Attempts that ended without the job (agent lost), queued again.",
            ["model"],
            registry=r,
        )
        self.preemptions = Counter(
            "wanfarm_preemptions",
            "Attempts stopped at a step boundary for a job of a higher priority, queued again uncharged.",
            ["model"],
            registry=r,
        )
        self.checkpoints = Counter(
            "wanfarm_checkpoints",
            "Denoising checkpoints written to object storage by attempts that ended.",
            ["model"],
            registry=r,
        )
        self.checkpoint_bytes = Counter(
            "wanfarm_checkpoint_bytes",
            "Bytes of denoising checkpoints written by attempts that ended.",
            ["model"],
            registry=r,
        )
        self.checkpoint_seconds = Counter(
            "wanfarm_checkpoint_seconds",
            "Seconds attempts that ended spent writing denoising checkpoints.",
            ["model"],
            registry=r,
        )
        self.steps_redone = Counter(
            "wanfarm_steps_redone",
            "Denoising steps an attempt ran again that an earlier attempt of its job had run "
            "(those after its last checkpoint).",
            ["model"],
            registry=r,
        )
        self.steps_resumed = Counter(
            "wanfarm_steps_resumed",
            "Denoising steps an attempt did not run again: it resumed from a checkpoint.",
            ["model"],
            registry=r,
        )
        self.agents_released = Counter(
            "wanfarm_agents_released",
            "Agents let go, freeing their GPU: idle past their class's timeout, or drained.",
            ["gpu_class", "reason"],
            registry=r,
        )
        self.queue_seconds = Histogram(
            "wanfarm_job_queue_seconds",
            "Time a job waited in the queue before an attempt started.",
            ["model", "gpu_model"],
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.render_seconds = Histogram(
            "wanfarm_job_render_seconds",
            "Generation time of a succeeded attempt (weights loading excluded).",
            ["model", "gpu_model"],
            buckets=RENDER_BUCKETS,
            registry=r,
        )
        self.load_seconds = Histogram(
            "wanfarm_model_load_seconds",
            "Time to make a model hot (fetch and load) for a succeeded attempt.",
            ["model", "gpu_model"],
            buckets=RENDER_BUCKETS,
            registry=r,
        )
        self.cache_hits = Counter(
            "wanfarm_weight_cache_hits",
            "Attempts whose weights were already hot or on the node's disk.",
            ["node", "kind"],
            registry=r,
        )
        self.cache_misses = Counter(
            "wanfarm_weight_cache_misses",
            "Attempts whose weights had to be fetched.",
            ["node", "kind"],
            registry=r,
        )
        self.downloaded_bytes = Counter(
            "wanfarm_weight_downloaded_bytes",
            "Weight bytes fetched into node caches for attempts.",
            ["node"],
            registry=r,
        )
        self.eta_error = Histogram(
            "wanfarm_eta_error_ratio",
            "How far a succeeded job's ETA at submit (its first placement's) was from its finish, "
            "relative to its latency; model_seen: a job of its model had finished before it was submitted.",
            ["model", "model_seen"],
            buckets=ETA_ERROR_BUCKETS,
            registry=r,
        )
        self.round_seconds = Histogram(
            "wanfarm_scheduler_round_seconds",
            "Duration of one dispatch round.",
            buckets=ROUND_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "wanfarm_scheduler_decisions", "Scheduler decisions applied, by kind.", ["kind"], registry=r
        )

    def attach(self, store: JobStore, agents: Callable[[], list[AgentInventory]]) -> None:
        """Add the gauges read at scrape time from the job store and the agents' inventories."""
        self.registry.register(FarmCollector(store, agents))

    def exposition(self) -> bytes:
        """The text exposition of every metric, as served on /metrics."""
        return generate_latest(self.registry)

    def record_checkpoints(self, event: AgentEvent, model: str, redone: int, resumed: int) -> None:
        """What an ended attempt's checkpoints cost and saved."""
        if event.checkpoint_bytes:
            self.checkpoints.labels(model).inc(event.checkpoint_saves)
            self.checkpoint_bytes.labels(model).inc(event.checkpoint_bytes)
            self.checkpoint_seconds.labels(model).inc(event.checkpoint_seconds)
        if redone:
            self.steps_redone.labels(model).inc(redone)
        if resumed:
            self.steps_resumed.labels(model).inc(resumed)

    def record_finished_attempt(self, event: AgentEvent, model: str, inventory: AgentInventory) -> None:
        """What a SUCCEEDED event tells about render time and the weight cache."""
        gpu = inventory.gpu_name
        self.render_seconds.labels(model, gpu).observe(event.render_seconds)
        self.load_seconds.labels(model, gpu).observe(event.load_seconds)
        source = event.weights_source if event.weights_source in WEIGHT_SOURCES else "download"
        counter = self.cache_misses if source == "download" else self.cache_hits
        counter.labels(inventory.node_id, source).inc()
        if event.bytes_fetched:
            self.downloaded_bytes.labels(inventory.node_id).inc(event.bytes_fetched)


class FarmCollector(Collector):
    """Gauges read when Prometheus scrapes: job counts, queue depth, and every agent's state.

    The finished-jobs counter is read from the store too: every path that ends a job (an agent's
    event, a requeue past the last attempt, a cancel while queued) counts, and a restarted
    controller carries on from the stored total instead of zero.
    """

    def __init__(self, store: JobStore, agents: Callable[[], list[AgentInventory]]) -> None:
        self.store = store
        self.agents = agents

    def collect(self) -> Iterator[Metric]:
        yield from self._jobs()
        yield from self._agents()

    def _jobs(self) -> Iterable[Metric]:
        counts = self.store.count_by_state()
        finished = CounterMetricFamily(
            "wanfarm_jobs_finished", "Jobs that reached a final state, by outcome.", labels=["outcome"]
        )
        states = GaugeMetricFamily("wanfarm_jobs", "Jobs in the store, by state.", labels=["state"])
        for state, n in counts.items():
            states.add_metric([state.value], n)
            if state.finished:
                finished.add_metric([state.value], n)
        depth = GaugeMetricFamily(
            "wanfarm_queue_depth", "Queued jobs by priority and model.", labels=["priority", "model"]
        )
        for (priority, model), n in sorted(self.store.queued_counts().items()):
            depth.add_metric([str(priority), model], n)
        return [finished, states, depth]

    def _agents(self) -> Iterable[Metric]:
        inventories = self.agents()
        busy_agents = {job.agent_id for job in self.store.running()} if inventories else set()
        up = _agent_gauge("wanfarm_agent_up", "1 for every agent that answers the controller.")
        busy = _agent_gauge("wanfarm_agent_busy", "1 while the agent runs a job.")
        vram_total = _agent_gauge("wanfarm_agent_vram_total_bytes", "The GPU's memory.")
        vram_used = _agent_gauge("wanfarm_agent_vram_used_bytes", "The GPU's memory in use.")
        utilization = _agent_gauge("wanfarm_agent_gpu_utilization_ratio", "The GPU's busy share, 0 to 1.")
        hot = GaugeMetricFamily(
            "wanfarm_agent_hot_model",
            "The model loaded on the agent (info: always 1).",
            labels=[*AGENT_LABELS, "model"],
        )
        cache = GaugeMetricFamily(
            "wanfarm_weight_cache_bytes",
            "Bytes of complete models in the node's weight cache.",
            labels=["node"],
        )
        # By agent, not summed by node: an agent's count restarts with it, which a sum would hide.
        storage_errors = CounterMetricFamily(
            "wanfarm_storage_errors",
            "Failed object storage attempts (retried or final) an agent has seen since it started.",
            labels=["agent", "node"],
        )
        nodes: dict[str, int] = {}
        for inv in inventories:
            labels = [inv.agent_id, inv.node_id, str(inv.gpu_index), inv.gpu_name, inv.arch]
            up.add_metric(labels, 1)
            busy.add_metric(labels, 1 if inv.agent_id in busy_agents else 0)
            vram_total.add_metric(labels, inv.vram_total)
            vram_used.add_metric(labels, inv.vram_total - inv.vram_free)
            utilization.add_metric(labels, inv.utilization)
            storage_errors.add_metric([inv.agent_id, inv.node_id], inv.storage_errors)
            if inv.hot_model:
                hot.add_metric([*labels, inv.hot_model], 1)
            nodes[inv.node_id] = inv.cache_bytes  # agents of a node share its cache
        for node, size in sorted(nodes.items()):
            cache.add_metric([node], size)
        return [up, busy, vram_total, vram_used, utilization, hot, cache, storage_errors]


def _agent_gauge(name: str, documentation: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(AGENT_LABELS))
