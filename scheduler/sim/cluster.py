"""The simulated pool's mutable state: nodes, agents and jobs, and the views a policy is shown.

Only the engine mutates these; a policy sees frozen AgentView/PendingJob records rebuilt from
them when something about an agent or job changes, so a snapshot costs a tuple copy.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from models.gpus import GpuSpec, find_gpu
from scheduler.preemption import PROGRESS_GRAIN
from scheduler.sim.formats import PoolSpec, TraceJob
from scheduler.sim.truth import JobNoise, RenderPhases, TruthConfig, card_efficiency
from scheduler.snapshot import AgentView, Assignment, PendingJob


@dataclass(slots=True, eq=False)
class SimNode:
    node_id: str
    ram_bytes: int
    disk_bytes: int
    disk_bytes_per_s: float
    net_bytes_per_s: float
    cached: frozenset[str]  # replaced, not mutated, so views can share it
    slow: bool  # the truth's "slow node": every card on it renders at half speed
    downloads: dict[str, float] = field(default_factory=dict)  # model -> when its download lands
    net_free_at: float = 0.0  # downloads share the link one after another
    agents: list[SimAgent] = field(default_factory=list)

    def ram_in_use(self) -> int:
        # True peaks of the jobs running on the node: what a probe of free RAM would see.
        return sum(a.attempt.ram_bytes for a in self.agents if a.attempt is not None)


@dataclass(slots=True, eq=False)
class SimJob:
    trace: TraceJob
    index: int  # place in the trace: keys the job's noise
    noise: JobNoise
    attempts: int = 0
    avoid: frozenset[str] = frozenset()
    kept_steps: int = 0  # denoising steps a preempted attempt checkpointed: the next one starts there
    preemptions: int = 0
    # The ETA the first placement after its arrival gave it, and whether a job of its model had
    # finished before it arrived (its ETA is then measured: scheduler.sim.metrics).
    submit_eta: float | None = None
    model_seen: bool = False
    view: PendingJob = field(init=False)

    def refresh_view(self) -> None:
        t = self.trace
        self.view = PendingJob(t.job_id, t.work, t.priority, t.owner, t.t, self.attempts, self.avoid)


@dataclass(slots=True, eq=False)
class Attempt:
    """One try of a job on an agent, with what really happens (known to the engine only)."""

    job: SimJob
    agent: SimAgent
    assignment: Assignment
    start: float
    load_s: float
    render_s: float  # the whole render, even when the attempt dies part way
    end: float
    vram_bytes: int
    ram_bytes: int
    out_of_memory: bool
    phases: RenderPhases  # this job's on this card (its luck included): set-up, each step, decoding
    first_step: int = 0  # the step it resumed from
    stopped_at: int | None = None  # the step a preemption stops it at (checkpointed); None: runs on

    def step_at(self, now: float) -> tuple[int, float]:
        """The last step boundary it passed by `now`, and when (the true progress an agent reports)."""
        total = self.job.trace.work.steps
        per_step = self.phases.step_s
        begun = self.start + self.load_s + self.phases.setup_s
        done = min(total - self.first_step, max(0, int((now - begun) / per_step))) if per_step > 0 else 0
        return self.first_step + done, begun + done * per_step

    def progress_due(self, shown: int) -> float:
        """A time no later than the first at which `step_at` leaves the progress grain of step `shown`
        (scheduler.preemption.progress_moved); inf when it never will. Half a step early, so float
        rounding in `step_at` cannot make it late."""
        total = self.job.trace.work.steps
        grain = max(1, int(total * PROGRESS_GRAIN))
        next_grain = (shown // grain + 1) * grain
        per_step = self.phases.step_s
        if next_grain <= self.first_step:
            return -math.inf  # resumed past it: it reports a step of a later grain from the start
        if next_grain > total or per_step <= 0:
            return math.inf
        begun = self.start + self.load_s + self.phases.setup_s
        return begun + (next_grain - self.first_step - 0.5) * per_step


@dataclass(slots=True, eq=False)
class SimAgent:
    agent_id: str
    index: int
    node: SimNode
    spec: GpuSpec
    flops_per_s: float  # true achieved speed (efficiency and slow node included)
    vram_bytes: int
    hot_model: str | None = None
    attempt: Attempt | None = None
    view: AgentView = field(init=False)
    # The engine's shortcut for progress: until `progress_due`, the view `progress_view` shows the
    # attempt's progress grain as it stands (see Attempt.progress_due).
    progress_view: AgentView | None = None
    progress_due: float = -math.inf

    def refresh_view(self, ram_in_use: int) -> None:
        """Rebuild the policy's view; `ram_in_use` is the node's, summed once by the caller."""
        spec, node, attempt = self.spec, self.node, self.attempt
        vram = self.vram_bytes
        self.view = AgentView(
            agent_id=self.agent_id,
            node_id=node.node_id,
            gpu_name=spec.name,
            arch=spec.arch,
            capability=spec.capability,
            vram_total=vram,
            vram_free=vram - min(attempt.vram_bytes, vram) if attempt else vram,
            ram_total=node.ram_bytes,
            ram_free=max(0, node.ram_bytes - ram_in_use),
            disk_free=node.disk_bytes,
            half_tflops=spec.half_tflops,
            hot_model=self.hot_model,
            cached_models=node.cached,
            # The policy's own ETA, never the truth: it must live with its estimates.
            busy_until=attempt.assignment.est_finish if attempt else None,
            declared=True,
            running_model=attempt.job.trace.work.model_id if attempt else None,
            running_owner=attempt.job.trace.owner if attempt else None,
            running_job=attempt.job.trace.job_id if attempt else None,
            running_priority=attempt.job.trace.priority if attempt else None,
            running_preemptions=attempt.job.preemptions if attempt else 0,
            running_total=attempt.job.trace.work.steps if attempt else 0,
            running_since=attempt.start if attempt else None,
            running_submitted_at=attempt.job.trace.t if attempt else None,
            disk_bytes_per_s=node.disk_bytes_per_s,
            net_bytes_per_s=node.net_bytes_per_s,
        )


def build_cluster(pool: PoolSpec, config: TruthConfig, seed: int) -> tuple[list[SimNode], list[SimAgent]]:
    """Expand the pool into nodes and agents, drawing each card's efficiency and slow nodes."""
    rng = random.Random(seed)
    nodes: list[SimNode] = []
    agents: list[SimAgent] = []
    for spec in pool.nodes:
        for copy in range(spec.count):
            node_id = spec.name if spec.count == 1 else f"{spec.name}-{copy}"
            slow = config.noise and rng.random() < config.slow_node_share
            node = SimNode(
                node_id, spec.ram_bytes, spec.disk_bytes, spec.disk_bytes_per_s, spec.net_bytes_per_s,
                spec.cached, slow,
            )  # fmt: skip
            for slot, gpu_name in enumerate(spec.gpus):
                gpu = find_gpu(gpu_name)
                speed = gpu.half_tflops * 1e12 * card_efficiency(config, rng)
                if slow:
                    speed /= config.slow_node_factor
                agent = SimAgent(f"{node_id}/gpu{slot}", len(agents), node, gpu, speed, gpu.vram_bytes)
                node.agents.append(agent)
                agents.append(agent)
            nodes.append(node)
    for agent in agents:
        agent.refresh_view(0)
    return nodes, agents
