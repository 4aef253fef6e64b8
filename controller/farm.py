"""A running farm: Ray cluster, job store, object storage, agents, dispatch loop and HTTP API."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import uvicorn

from controller import uploads
from controller.api.app import create_app
from controller.api.guards import is_loopback, served_hosts
from controller.auth import KeyRing
from controller.autoscale import Autoscaler
from controller.autoscale_metrics import DemandCollector
from controller.dispatcher import Dispatcher, agent_view
from controller.leftovers import sweep_leftovers
from controller.metrics import FarmMetrics
from controller.quarantine import QuarantineBook, quarantine_out, release_agent
from controller.quarantine_metrics import QuarantineCollector
from controller.ray_cluster import Cluster
from controller.registry import AgentRegistry, AgentSettings
from controller.schemas import AgentOut, AutoscaleOut, ClassDemandOut, DrainOut, ReleasedOut
from controller.service import FarmService
from controller.service_error import ServiceError
from controller.store import JobStore
from controller.utilisation import UtilisationLog
from gpu_agent.messages import AgentInventory
from gpu_agent.storage import StorageConfig, open_store
from scheduler.demand import ScalingRules, class_view
from scheduler.quarantine import QuarantineRules
from scheduler.registry import get_policy
from scheduler.snapshot import AgentView

log = logging.getLogger(__name__)
GIB = 1024**3
UPLOAD_SWEEP_EVERY_S = 300.0


class FarmConfigError(ValueError):
    """A farm configuration that must not start; the message says what to change."""


@dataclass(frozen=True)
class FarmConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000  # 0 picks a free port
    ray_address: str | None = None  # None starts a local Ray (the embedded default)
    declared_gpus: tuple[str, ...] = ()  # GPU-table names for the local node's CPU agents
    storage: StorageConfig | None = None  # default: a local folder under data_dir
    cache_dir: Path | None = None  # default: data_dir/weights
    cache_budget_gb: float | None = None
    weight_mirror: bool = False
    attention: str = "auto"
    lora_dir: Path | None = None  # LoRAs for agents whose node sets no $WANFARM_LORAS
    policy: str = "wanfarm"
    api_keys: Path | None = None  # default: $WANFARM_API_KEYS, else an open farm (loopback only)
    allowed_hosts: tuple[str, ...] = ()  # Host names served besides the bound one; "*" for any
    cors_origins: tuple[str, ...] = ()  # other sites whose pages may call the API
    quarantine_rules: QuarantineRules | None = None  # default: scheduler.quarantine's thresholds
    # Running jobs' checkpoints: every N denoising steps when set, else every T seconds of it.
    checkpoint_steps: int | None = None
    checkpoint_seconds: float = 60.0
    # GPU classes the cluster's autoscaler can add (controller.gpu_classes); None: a fixed pool.
    scaling: ScalingRules | None = None


class Farm:
    def __init__(self, config: FarmConfig) -> None:
        self.config = config
        self.keys = KeyRing.load(config.api_keys)
        if self.keys.open and not is_loopback(config.host):
            raise FarmConfigError(
                f"refusing to serve {config.host} without API keys: give --api-keys FILE or set "
                "WANFARM_API_KEYS, or bind to 127.0.0.1"
            )
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.storage_config = config.storage or StorageConfig(kind="local", root=config.data_dir / "objects")
        self.storage = open_store(self.storage_config)
        self.store = JobStore(config.data_dir / "jobs.db")
        self.metrics = FarmMetrics()  # this farm's own registry: farms in one process stay apart
        self.utilisation = UtilisationLog()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: uvicorn.Server | None = None
        self.cluster: Cluster | None = None
        self.registry: AgentRegistry | None = None
        self.dispatcher: Dispatcher | None = None
        self.autoscaler: Autoscaler | None = None
        self.url = ""

    def start(self) -> Farm:
        """Join or start Ray, find or start agents, then serve; returns once the API answers."""
        self.cluster = Cluster(self.config.ray_address, self.config.declared_gpus)
        budget = int(self.config.cache_budget_gb * GIB) if self.config.cache_budget_gb else None
        settings = AgentSettings(
            storage=self.storage_config,
            cache_dir=self.config.cache_dir or self.config.data_dir / "weights",
            cache_budget_bytes=budget,
            weight_mirror=self.config.weight_mirror,
            attention=self.config.attention,
            lora_dir=self.config.lora_dir,
            checkpoint_steps=self.config.checkpoint_steps,
            checkpoint_seconds=self.config.checkpoint_seconds,
        )
        self.registry = AgentRegistry(self.cluster, settings)
        self.registry.refresh()
        # What start built (imports, Ray's client, the agents' handles) lives as long as the farm:
        # full collections stop scanning it, which otherwise stalls dispatch rounds and requests.
        gc.freeze()
        self.metrics.attach(self.store, self.inventories)
        quarantine = QuarantineBook(self.store, time.time, self.config.quarantine_rules)
        if self.config.scaling is not None:
            self.autoscaler = Autoscaler(self.cluster, self.registry, self.config.scaling, self.metrics)
            self.metrics.registry.register(DemandCollector(lambda: self.autoscaler))
        dispatcher = Dispatcher(
            self.store,
            self.registry,
            get_policy(self.config.policy),
            metrics=self.metrics,
            quarantine=quarantine,
            autoscaler=self.autoscaler,
        )
        self.dispatcher = dispatcher
        self.metrics.registry.register(QuarantineCollector(dispatcher.quarantine, self.inventories))
        service = FarmService(self.store, self.storage, self.pool, time.time, self.metrics)
        app = create_app(
            service,
            self.keys,
            self.agent_listing,
            self.metrics,
            hosts=served_hosts(self.config.host, self.config.allowed_hosts),
            cors_origins=self.config.cors_origins,
            release_agent=self.release_agent,
            drain_agent=self.drain_agent,
            autoscale=self.autoscale_view,
        )
        app.state.utilisation = self.utilisation
        self._spawn("utilisation", self._sample_utilisation)
        self._spawn("uploads", self._sweep_uploads)
        self._server = uvicorn.Server(
            uvicorn.Config(app, host=self.config.host, port=self.config.port, log_level="warning")
        )
        self._spawn("dispatch", lambda: dispatcher.run(self._stop))
        self._spawn("http", self._server.run)
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._threads[-1].is_alive():
                raise RuntimeError(f"the API did not start on {self.config.host}:{self.config.port}")
            time.sleep(0.05)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{self.config.host}:{port}"
        return self

    def stop(self, kill_agents: bool = False) -> None:
        """Stop serving and dispatching; agents keep running unless asked (they are detached)."""
        self._stop.set()
        if self._server is not None:
            self._server.should_exit = True
        for thread in self._threads:
            thread.join(timeout=10)
        if kill_agents and self.registry is not None:
            for entry in self.registry.entries():
                entry.handle.kill()
        self.store.close()
        if self.cluster is not None and kill_agents:
            self.cluster.shutdown()

    def pool(self) -> list[AgentView]:
        """Every known agent as the scheduler sees it, and an agent of each GPU class the autoscaler
        can add (for refusals at submit: a class at zero nodes still runs what fits it)."""
        agents = [agent_view(inventory, None) for inventory in self.inventories()]
        scaling = self.config.scaling
        return agents + [class_view(c) for c in scaling.classes if c.max_gpus] if scaling else agents

    def inventories(self) -> list[AgentInventory]:
        """Every known agent's latest inventory, as the registry polled it."""
        return [e.inventory for e in (self.registry.entries() if self.registry else [])]

    def agent_listing(self) -> list[AgentOut]:
        # A pipelined agent runs two: the newest started is the one on its GPU.
        jobs = sorted(self.store.running(), key=lambda job: job.started_at or 0.0)
        running = {job.agent_id: job.id for job in jobs}
        held = self.dispatcher.quarantine.rows() if self.dispatcher else {}
        classes = self.registry.agent_classes() if self.registry else {}
        draining = self.registry.draining() if self.registry else {}
        listing = []
        for entry in self.registry.entries() if self.registry else []:
            inv = entry.inventory
            listing.append(
                AgentOut(
                    agent_id=inv.agent_id,
                    node_id=inv.node_id,
                    hostname=inv.hostname,
                    gpu_index=inv.gpu_index,
                    gpu_name=inv.gpu_name,
                    arch=inv.arch,
                    capability=f"{inv.capability[0]}.{inv.capability[1]}",
                    vram_total=inv.vram_total,
                    vram_free=inv.vram_free,
                    ram_total=inv.ram_total,
                    disk_free=inv.disk_free,
                    cached_models=list(inv.cached_models),
                    hot_model=inv.hot_model,
                    declared=inv.declared,
                    device=inv.device,
                    busy=inv.agent_id in running,
                    current_job=running.get(inv.agent_id),
                    storage_errors=inv.storage_errors,
                    last_storage_error=inv.last_storage_error,
                    plugins=list(inv.plugins),
                    quarantine=quarantine_out(held[inv.agent_id]) if inv.agent_id in held else None,
                    gpu_class=classes.get(inv.agent_id),
                    draining=inv.agent_id in draining,
                    node_name=self.registry.node_name(inv.agent_id) if self.registry else "",
                )
            )
        return listing

    def release_agent(self, agent_id: str) -> ReleasedOut:
        """An admin ends an agent's quarantine (POST /v1/agents/{id}/release)."""
        if self.dispatcher is None:
            raise RuntimeError("the farm is not started")
        known = [entry.inventory.agent_id for entry in self.registry.entries()] if self.registry else []
        return release_agent(self.dispatcher.quarantine, known, agent_id)

    def drain_agent(self, agent_id: str, finish: bool) -> DrainOut:
        """Drain an agent (POST /v1/agents/{id}/drain): no new work, its job stopped or let finish."""
        entry = self.registry.get(agent_id) if self.registry else None
        if entry is None or self.registry is None:
            raise ServiceError(404, f"no agent {agent_id!r}", hint="`wanfarm agents` lists the pool")
        self.registry.drain(agent_id, finish)
        job = next((j.id for j in self.store.running() if j.agent_id == agent_id), None)
        log.info("draining agent %s (%s)", agent_id, "its job finishes first" if finish else "its job stops")
        return DrainOut(agent_id=agent_id, node_id=entry.inventory.node_id, state="draining", job_id=job)

    def autoscale_view(self) -> AutoscaleOut:
        """Demand per GPU class against its agents (GET /v1/autoscale)."""
        scaling, autoscaler = self.config.scaling, self.autoscaler
        if scaling is None or autoscaler is None:
            return AutoscaleOut(enabled=False)
        gpus = {c.name: c.gpu for c in scaling.classes}
        return AutoscaleOut(
            enabled=True,
            classes=[ClassDemandOut(gpu=gpus[d.gpu_class], **asdict(d)) for d in autoscaler.demand],
            released=autoscaler.released,
        )

    def _sample_utilisation(self) -> None:
        """Every `every_s`, the share of agents running a job, for /v1/stats."""
        while not self._stop.is_set():
            try:
                total = len(self.registry.entries()) if self.registry else 0
                busy = len({job.agent_id for job in self.store.running()})
                self.utilisation.record(time.time(), min(busy, total), total)
            except Exception:
                log.exception("utilisation sample failed")
            self._stop.wait(self.utilisation.every_s)

    def _sweep_uploads(self) -> None:
        """Delete attachments, long videos' windows and checkpoints no queued or running job needs: at
        start, then every few minutes."""
        while not self._stop.is_set():
            try:
                uploads.sweep(self.storage, self.store, time.time())
                sweep_leftovers(self.storage, self.store)
            except Exception:
                log.exception("upload sweep failed")
            self._stop.wait(UPLOAD_SWEEP_EVERY_S)

    def _spawn(self, name: str, target: Callable[[], object]) -> None:
        thread = threading.Thread(target=target, name=f"farm-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)
