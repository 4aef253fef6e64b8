"""The latency no policy can beat on a pool and trace, from the simulator's own truth for a seed.

Two bounds from the same draws the engine makes, so they hold for every policy run with that seed:
alone (every job on the card that renders it fastest, weights hot, nothing ahead: also the p95
floor) and capacity (a Lagrangian bound with prices on each card's hours). The mean's floor is the
higher of the two; both hold for a policy that finishes every job. The proof: docs/scheduler.md,
"The latency floor".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from models.catalogue import get_model
from models.profiles import SPEED_ORDER
from models.work import WorkSize
from scheduler.feasibility import arch_problem
from scheduler.sim.cluster import SimAgent, build_cluster
from scheduler.sim.formats import PoolSpec, TraceJob
from scheduler.sim.memory_truth import MemoryPeaks, memory_peaks
from scheduler.sim.metrics import percentile
from scheduler.sim.truth import TruthConfig, job_noise, render_seconds

SPEED_GROUPS = 32  # cards of one kind are split by drawn speed into this many groups, each priced alone
HORIZONS = 32  # waiting horizons D tried, spread geometrically (see _capacity_mean)
PRICE_STEPS = 1000  # steps on the cards' prices for each horizon
PRICE_RATE = 0.3  # the first step's size, relative to a price of 1 (the render time doubled)


@dataclass(frozen=True)
class LatencyFloor:
    mean_s: float  # the higher of the alone and the capacity bound
    p95_s: float  # alone
    jobs: int  # jobs some card of the pool can run (the others have no floor and are left out)
    alone_mean_s: float  # the mean if every job had its fastest card to itself


@dataclass(frozen=True)
class _Group:
    """Cards of one kind (card, VRAM, node RAM) within a band of drawn speed."""

    kind: tuple[str, int, int]
    fastest: SimAgent  # none of the group renders faster
    count: int


def latency_floor(
    pool: PoolSpec, trace: Iterable[TraceJob], seed: int = 0, truth: TruthConfig | None = None
) -> LatencyFloor:
    """Mean and p95 latency no policy can go under on this pool and trace, for this seed."""
    config = truth or TruthConfig()
    groups = _speed_groups(build_cluster(pool, config, seed)[1])
    kinds: dict[tuple[str, int, int], list[int]] = {}  # kind -> its groups' numbers
    for number, group in enumerate(groups):
        kinds.setdefault(group.kind, []).append(number)
    options: dict[tuple[object, ...], list[_Option]] = {}  # by WorkSize.key
    # Jobs with the same render times on every group (before their own render luck) form a lot:
    # under any prices they choose the same group, which makes the capacity bound cheap.
    lots: dict[tuple[float, ...], list[float]] = {}
    best_renders: dict[tuple[tuple[object, ...], tuple[bool, ...]], tuple[float, ...]] = {}
    span = 0.0
    for index, job in enumerate(trace):
        span = max(span, job.t)
        key = job.work.key
        if key not in options:
            options[key] = _options(job.work, groups, kinds)
        noise = job_noise(config, seed, index, job.work.model_id)
        fits = tuple(
            vram <= option.vram and ram <= option.ram
            for option in options[key]
            for vram, ram in (option.need.lucky(noise),)
        )
        renders = best_renders.get((key, fits))
        if renders is None:
            renders = best_renders[key, fits] = _best_renders(options[key], fits, len(groups))
        if min(renders) < math.inf:
            lots.setdefault(renders, []).append(noise.render)
    alone = sorted(min(renders) * luck for renders, lucks in lots.items() for luck in lucks)
    if not alone:
        return LatencyFloor(0.0, 0.0, 0, 0.0)
    alone_mean = sum(alone) / len(alone)
    capacity = _capacity_mean(lots, [group.count for group in groups], span, alone_mean)
    return LatencyFloor(max(alone_mean, capacity), percentile(alone, 95), len(alone), alone_mean)


def _speed_groups(agents: list[SimAgent]) -> list[_Group]:
    kinds: dict[tuple[str, int, int], list[SimAgent]] = {}
    for agent in agents:
        kinds.setdefault((agent.spec.name, agent.vram_bytes, agent.node.ram_bytes), []).append(agent)
    groups: list[_Group] = []
    for kind, members in kinds.items():
        members.sort(key=lambda agent: agent.flops_per_s)
        count = min(SPEED_GROUPS, len(members))
        for band in range(count):
            chunk = members[band * len(members) // count : (band + 1) * len(members) // count]
            groups.append(_Group(kind, chunk[-1], len(chunk)))
    return groups


@dataclass(frozen=True)
class _Option:
    """One profile on one kind of card: whether a job fits depends on the kind, its speed on the group."""

    renders: tuple[tuple[int, float], ...]  # (group, render seconds before the job's render luck)
    need: MemoryPeaks  # before the job's memory luck (MemoryPeaks.lucky applies it, as the engine does)
    vram: int  # the card's
    ram: int  # its node's


def _options(
    work: WorkSize, groups: list[_Group], kinds: dict[tuple[str, int, int], list[int]]
) -> list[_Option]:
    # Every (kind of card, profile) that could run a job of this shape; its luck decides which fit.
    preset = get_model(work.model_id)
    found: list[_Option] = []
    for members in kinds.values():
        agent = groups[members[0]].fastest
        if arch_problem(preset, agent.view) is not None:
            continue
        for profile in SPEED_ORDER:
            need = memory_peaks(work.model_id, profile, work.size)
            renders = tuple(
                (number, render_seconds(work, profile, groups[number].fastest.flops_per_s))
                for number in members
            )
            found.append(_Option(renders, need, agent.vram_bytes, agent.node.ram_bytes))
    return found


def _best_renders(options: list[_Option], fits: tuple[bool, ...], groups: int) -> tuple[float, ...]:
    # Per group, the fastest render among the profiles that fit (inf where none does).
    renders = [math.inf] * groups
    for option, fit in zip(options, fits, strict=True):
        if fit:
            for group, render_s in option.renders:
                renders[group] = min(renders[group], render_s)
    return tuple(renders)


def _capacity_mean(
    lots: dict[tuple[float, ...], list[float]], counts: list[int], span: float, alone: float
) -> float:
    """The best Lagrangian bound found on the mean latency (docs/scheduler.md); never above
    the true optimum, whatever prices and horizons are tried, so the search needs no proof.

    For a horizon D and prices p >= 0 on each group's card-seconds, every job costs the least of D
    and, over the groups, its render x (1 + p); the bound is the jobs' sum less the prices times
    every group's hours, (span + D) x cards. Prices climb where the jobs' choices overrun a group's
    hours and fall where they leave some, in steps scaled per group by its past overruns (AdaGrad),
    and carry over from one horizon to the next (horizons grow, the best prices change slowly).
    """
    renders = np.array(list(lots), dtype=float)  # lot x group, inf where the lot cannot run
    rows = np.arange(len(renders))
    cards = np.array(counts, dtype=float)
    # Each lot's lucks sorted, laid end to end and lifted by `top` x the lot's number, so that one
    # search finds for every lot how many of its jobs cost less than D.
    sizes = np.array([len(lucks) for lucks in lots.values()])
    top = 2.0 * max(max(lucks) for lucks in lots.values()) + 1.0
    offsets = np.arange(len(lots), dtype=float) * top
    keyed = np.concatenate(
        [np.sort(np.array(lucks)) + offset for lucks, offset in zip(lots.values(), offsets, strict=True)]
    )
    sums = np.concatenate([[0.0], np.cumsum(keyed - np.repeat(offsets, sizes))])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    jobs = int(sizes.sum())
    best = alone * jobs
    prices = np.zeros(len(counts))
    # Every horizon gives a bound; the search stops at twice (the span + the jobs' alone renders
    # spread over every card), where the cards have hours to spare on average.
    longest = 2 * (span + alone * jobs / cards.sum())
    for horizon in np.geomspace(max(alone, 1.0), longest, HORIZONS):
        hours = cards * (span + horizon)
        squares = np.full(len(counts), 1e-12)
        for _ in range(PRICE_STEPS):
            priced = renders * (1 + prices)
            chosen = priced.argmin(axis=1)
            cost = priced[rows, chosen]
            # Jobs of a lot whose luck is under D / cost render; the others cost D.
            cut = np.searchsorted(keyed, offsets + np.minimum(horizon / cost, top)) - starts
            lucky = sums[starts + cut] - sums[starts]
            value = float((cost * lucky).sum() + horizon * (sizes - cut).sum() - (prices * hours).sum())
            best = max(best, value)
            used = np.bincount(chosen, weights=renders[rows, chosen] * lucky, minlength=len(counts))
            overrun = (used - hours) / hours
            squares += overrun * overrun
            prices = np.maximum(0.0, prices + PRICE_RATE * overrun / np.sqrt(squares))
    return best / jobs
