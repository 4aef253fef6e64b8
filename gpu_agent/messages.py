"""What crosses between the controller and a GPU agent: configuration, tasks, events, inventory."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from gpu_agent.storage import StorageConfig
from models.attention import AttentionMode
from models.profiles import Profile
from models.work import WorkSize

# Settings values that name an object in the farm's storage rather than a local file: the agent
# downloads them before rendering (queue.zip attachments uploaded at submit).
OBJECT_REF = "object:"
UPLOADS_PREFIX = "uploads/"  # the one folder of object storage that job settings may refer to


@dataclass(frozen=True)
class AgentConfig:
    """How to build one agent: its GPU (probed, or declared by GPU-table name), cache and storage."""

    agent_id: str
    node_id: str
    gpu_index: int
    storage: StorageConfig
    cache_dir: Path
    cache_budget_bytes: int | None = None
    declared_gpu: str | None = None  # GPU-table name; None means probe the real device
    declared_ram_bytes: int | None = None
    weight_mirror: bool = False  # fill the cache from the storage's weights/ before the hub
    attention: str = "auto"
    node_agents: int = 1  # agents of its node, sharing its cores
    lora_dir: Path | None = None  # LoRA root (WanGP's loras/ layout), unless the node sets $WANFARM_LORAS
    lora_cache_bytes: int | None = None  # LoRA cache budget; None: $WANFARM_LORA_CACHE_GB, else 20 GiB
    # Checkpoints of running jobs (gpu_agent.checkpoints): every N steps when set, else every T
    # seconds of denoising (spaced out further when writing them would cost over 2% of it).
    checkpoint_steps: int | None = None
    checkpoint_seconds: float = 60.0
    gpu_class: str | None = None  # its node's autoscaler class (scheduler.demand), if any


@dataclass(frozen=True)
class RenderTask:
    """One attempt of one job on one agent: the settings, the work they were placed as, and the
    memory profile placement chose for it."""

    job_id: str
    attempt: int
    settings: dict[str, Any]
    work: WorkSize
    profile: Profile
    plugins: tuple[str, ...] = ()  # post-processors it was placed for (processing.plugins)


class EventKind(StrEnum):
    PROGRESS = "progress"
    OUTPUT = "output"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    # A window of a long video is stored (`step` windows of `total` done): the attempt ends and
    # the job queues for its next window, which the scheduler places.
    WINDOW = "window"
    # The task stopped at a step boundary for a job of a higher priority (the controller asked:
    # `GpuAgent.preempt`), its denoising state checkpointed (`step` of `total` kept): the job
    # queues again with its progress and is not charged an attempt.
    PREEMPTED = "preempted"

    @property
    def final(self) -> bool:
        """The attempt ended (the job itself may go on: WINDOW)."""
        return self in (
            EventKind.SUCCEEDED,
            EventKind.FAILED,
            EventKind.CANCELED,
            EventKind.WINDOW,
            EventKind.PREEMPTED,
        )


@dataclass(frozen=True)
class AgentEvent:
    """Something that happened to a task; `seq` increases per agent so a reader can resume."""

    seq: int
    job_id: str
    attempt: int
    kind: EventKind
    step: int = 0
    total: int = 0
    phase: str = ""
    output_key: str | None = None
    error: str | None = None
    # On SUCCEEDED: how the attempt really ran, for the scheduler to learn speeds and memory from.
    load_seconds: float = 0.0
    render_seconds: float = 0.0
    peak_vram_bytes: int = 0
    # Where the weights came from: "hot" (already loaded), "disk" (the node cache) or "download"
    # (fetched for this attempt, `bytes_fetched` of them), for the farm's cache metrics.
    weights_source: str = "hot"
    bytes_fetched: int = 0
    # Checkpoints (models.checkpoint): on an attempt's final event, the step it resumed from (0: from
    # the start) and what writing its checkpoints cost (how many, bytes written, seconds spent).
    resumed_from: int = 0
    checkpoint_saves: int = 0
    checkpoint_bytes: int = 0
    checkpoint_seconds: float = 0.0


@dataclass(frozen=True)
class AgentInventory:
    """An agent's GPU, node and cache as it reports them now."""

    agent_id: str
    node_id: str
    hostname: str
    gpu_index: int
    gpu_name: str
    arch: str
    capability: tuple[int, int]
    vram_total: int
    vram_free: int
    ram_total: int
    ram_free: int
    disk_free: int
    half_tflops: float
    cached_models: tuple[str, ...]
    hot_model: str | None
    declared: bool
    device: str  # "cuda" or "cpu" (declared agents render on the CPU)
    # Depth-one pipelining: `current` is the newest task held (on the GPU, or finishing when alone),
    # `previous` an older one still encoding or uploading beside it.
    current_job: str | None = None
    current_attempt: int | None = None
    previous_job: str | None = None
    previous_attempt: int | None = None
    accepts_next: bool = False  # busy, but its only task has left the GPU: it takes one more now
    cache_bytes: int = 0  # the node's weight cache on disk
    utilization: float = 0.0  # the GPU's busy share (0-1); a declared agent reports 1 while rendering
    # Failed storage attempts since the agent started, retried or final (a node whose storage keeps
    # failing shows a growing count), and the latest one: "<operation> <key>: <error>".
    storage_errors: int = 0
    last_storage_error: str | None = None
    attention_modes: tuple[AttentionMode, ...] = ()  # the kernels it runs, sorted; () if not reported
    # LoRAs it holds: "name@sha256" for each file of its LoRA cache, the bare file name for each of its
    # LoRA folder (used before any other: not hashed for this).
    loras: tuple[str, ...] = ()
    # The plugins installed on its node: post-processors and model families (processing.plugins).
    plugins: tuple[str, ...] = ()
