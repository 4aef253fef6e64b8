"""What a policy sees (a snapshot) and what it returns (decisions): typed, immutable records.

The clock is part of the snapshot (`now`), so a policy decides from the snapshot alone: the
controller and the simulator build snapshots, call `policy.place(snapshot)`, and apply the decisions
themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.attention import AttentionMode
from models.loras import LoraNeed
from models.overrides import Overrides
from models.profiles import Profile
from models.work import WorkSize


@dataclass(frozen=True)
class AgentView:
    """One GPU agent as the controller last saw it."""

    agent_id: str
    node_id: str
    gpu_name: str  # GPU-table name when known, else the device name
    arch: str
    capability: tuple[int, int]
    vram_total: int  # bytes
    vram_free: int
    ram_total: int  # bytes, the node's
    ram_free: int
    disk_free: int  # bytes free for the weight cache
    half_tflops: float  # dense half-precision throughput, for ranking speed
    hot_model: str | None = None  # loaded in memory now
    cached_models: frozenset[str] = frozenset()  # complete on the node's disk
    busy_until: float | None = None  # None when idle, else when its current job should end
    declared: bool = False  # inventory from configuration, not probed
    running_model: str | None = None  # model of the job it runs now (hot once that job ends)
    disk_bytes_per_s: float = 2e9  # node disk read speed, for loading cached weights
    net_bytes_per_s: float = 125e6  # node download speed, for weights not cached
    running_owner: str | None = None  # owner of the job it runs now, for per-owner fair share
    loras: frozenset[str] = frozenset()  # LoRAs it holds, as AgentInventory.loras reports them
    # Attention kernels it runs, as it reports them; None: the ones its architecture allows.
    attention_modes: frozenset[AttentionMode] | None = None
    # Plugins installed on its node (processing.plugins); None: not reported, WanFarm's own only.
    plugins: frozenset[str] | None = None
    # The job it runs now, as a preemption weighs it (scheduler.preemption): its id and priority, how
    # often it was preempted already, its denoising progress (0 of 0: not reported yet), when its
    # attempt started and when it reported that step; `preempting`: a preemption was sent and the
    # job has not stopped yet.
    running_job: str | None = None
    running_priority: int | None = None
    running_preemptions: int = 0
    running_step: int = 0
    running_total: int = 0
    running_since: float | None = None
    running_submitted_at: float | None = None  # when the running job was submitted, for its standing
    running_step_at: float | None = None
    preempting: bool = False

    @property
    def idle(self) -> bool:
        return self.busy_until is None


@dataclass(frozen=True)
class PendingJob:
    """One queued job: what it asks for and who asked."""

    job_id: str
    work: WorkSize
    priority: int  # 0-100, higher first
    owner: str
    submitted_at: float
    attempts: int = 0
    avoid_agents: frozenset[str] = frozenset()  # agents an earlier attempt died on
    loras: tuple[LoraNeed, ...] = ()  # the LoRAs it names: an agent without one fetches it first
    overrides: Overrides | None = None  # the profile / attention kernel it forces; None: the farm's


@dataclass(frozen=True)
class Snapshot:
    now: float
    agents: tuple[AgentView, ...]
    pending: tuple[PendingJob, ...]


@dataclass(frozen=True)
class Assignment:
    """Run `job_id` on `agent_id` under `profile`; the estimates are the policy's own."""

    job_id: str
    agent_id: str
    profile: Profile
    est_start: float
    est_finish: float
    reason: str  # why this agent: "hot", "cached", "fastest free", ...


@dataclass(frozen=True)
class Prefetch:
    """Warm `model_id`'s weights into `agent_id`'s node cache while it is idle."""

    agent_id: str
    model_id: str


@dataclass(frozen=True)
class Waiting:
    """A job left pending this round, and why (for the user and the dashboard)."""

    job_id: str
    reason: str
    eta: float | None = None


@dataclass(frozen=True)
class Observation:
    """A finished job as it really ran: what a learning policy corrects its estimates with."""

    job_id: str
    work: WorkSize
    gpu_name: str
    profile: Profile
    render_seconds: float  # denoising and decoding, without loading the weights
    load_seconds: float
    peak_vram_bytes: int | None = None  # None when not measured (CPU, declared GPUs)
    out_of_memory: bool = False
    owner: str | None = None  # who asked for the job, for per-owner fair share
    finished_at: float | None = None  # when it ended, so older service counts for less
    # From the assignment to the finish as the controller saw it: the render and loading plus the
    # hand-over, encoding and upload around them. None where nothing surrounds them (the simulator).
    wall_seconds: float | None = None


@dataclass(frozen=True)
class Preemption:
    """Stop `job_id` on `agent_id` at its next step boundary (it checkpoints and queues again,
    not charged) so that `for_job_id`, of a higher priority class, takes the agent."""

    job_id: str
    agent_id: str
    for_job_id: str
    reason: str


@dataclass(frozen=True)
class Decisions:
    assignments: tuple[Assignment, ...] = ()
    prefetches: tuple[Prefetch, ...] = ()
    waiting: tuple[Waiting, ...] = field(default_factory=tuple)
    preemptions: tuple[Preemption, ...] = ()
