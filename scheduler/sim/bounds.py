"""The latency no policy can beat on a pool and trace: every job alone on the card that renders it
fastest, with its weights hot and nothing ahead of it.

Computed from the simulator's own truth for the same seed (each card's drawn speed, each job's render
luck, the true memory under each profile), so for that seed every job's latency under any policy is
at least its floor, and so are the mean and every percentile. It tells a target that cannot be met
(the floor is above it) from one a policy misses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from models.catalogue import get_model
from models.memory import JobSize
from models.profiles import SPEED_ORDER
from scheduler.feasibility import arch_problem
from scheduler.sim.cluster import SimAgent, build_cluster
from scheduler.sim.formats import PoolSpec, TraceJob
from scheduler.sim.metrics import percentile
from scheduler.sim.truth import JobNoise, TruthConfig, job_noise, lucky_peaks, render_seconds, true_memory


@dataclass(frozen=True)
class LatencyFloor:
    mean_s: float
    p95_s: float
    jobs: int  # jobs some card of the pool can run (the others have no floor and are left out)


def latency_floor(
    pool: PoolSpec, trace: Iterable[TraceJob], seed: int = 0, truth: TruthConfig | None = None
) -> LatencyFloor:
    """Mean and p95 of each job's render time on its fastest card of the pool, for this seed."""
    config = truth or TruthConfig()
    _, agents = build_cluster(pool, config, seed)
    # Cards that differ in nothing a job's render or fit depends on: keep the fastest of each kind.
    fastest: dict[tuple[str, int, int], SimAgent] = {}
    for agent in agents:
        kind = (agent.spec.name, agent.vram_bytes, agent.node.ram_bytes)
        if kind not in fastest or agent.flops_per_s > fastest[kind].flops_per_s:
            fastest[kind] = agent
    kinds = list(fastest.values())
    options: dict[tuple[str, JobSize, int], list[_Option]] = {}
    floors: list[float] = []
    for index, job in enumerate(trace):
        size = JobSize(job.width, job.height, job.frames, job.batch)
        key = (job.model, size, job.steps)
        if key not in options:
            options[key] = _options(job.model, size, job.steps, kinds)
        noise = job_noise(config, seed, index)
        fitting = []
        for option in options[key]:
            vram, ram = lucky_peaks(option.vram_need, option.ram_need, noise)
            if vram <= option.vram and ram <= option.ram:
                fitting.append(option.render_s)
        if fitting:
            floors.append(min(fitting) * noise.render)
    floors.sort()
    mean = sum(floors) / len(floors) if floors else 0.0
    return LatencyFloor(mean, percentile(floors, 95), len(floors))


@dataclass(frozen=True)
class _Option:
    render_s: float  # before the job's own render luck
    vram_need: int  # before the job's memory luck (truth.lucky_peaks applies it, as the engine does)
    ram_need: int
    vram: int  # the card's
    ram: int  # its node's


def _options(model_id: str, size: JobSize, steps: int, agents: list[SimAgent]) -> list[_Option]:
    # Every (card, profile) that could run a job of this shape; its luck decides which fit.
    preset = get_model(model_id)
    found: list[_Option] = []
    for agent in agents:
        if arch_problem(preset, agent.view) is not None:
            continue
        for profile in SPEED_ORDER:
            vram, ram = true_memory(model_id, profile, size, JobNoise())
            seconds = render_seconds(model_id, size, steps, profile, agent.flops_per_s)
            found.append(_Option(seconds, vram, ram, agent.vram_bytes, agent.node.ram_bytes))
    return found
