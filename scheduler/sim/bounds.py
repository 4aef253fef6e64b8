"""The latency no policy can beat on a pool and trace, from the simulator's own truth for a seed.

Bounds from the same draws the engine makes, so they hold for every policy run with that seed:
alone (each job on the card that renders it fastest once its model can be there, nothing ahead:
also a p95 floor), capacity (a Lagrangian bound with prices on each card's hours over one
horizon), and the window bounds (scheduler.sim.bounds_sums and bounds_windows: the same capacity,
and whole jobs counted, window by window of arrivals). The mean's floor is the highest of them, the
p95's the higher of alone and the window count; all hold for a policy that finishes every job,
preemptions included. The proof: docs/scheduler.md, "The latency floor".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from models.catalogue import get_model
from models.profiles import SPEED_ORDER
from models.work import WorkSize
from scheduler.feasibility import arch_problem
from scheduler.sim.bounds_sums import window_sum
from scheduler.sim.bounds_windows import Windows, Workload, window_floor
from scheduler.sim.cluster import SimAgent, build_cluster
from scheduler.sim.formats import PoolSpec, TraceJob
from scheduler.sim.memory_truth import CONTEXT, MemoryPeaks, memory_peaks
from scheduler.sim.metrics import percentile
from scheduler.sim.truth import OVERHEAD_S, JobNoise, TruthConfig, job_noise, render_phases

SPEED_GROUPS = 32  # cards of one kind are split by drawn speed into this many groups, each priced alone
HORIZONS = 32  # waiting horizons D tried, spread geometrically (see _capacity_mean)
PRICE_STEPS = 1000  # steps on the cards' prices for each horizon
PRICE_RATE = 0.3  # the first step's size, relative to a price of 1 (the render time doubled)


@dataclass(frozen=True)
class LatencyFloor:
    mean_s: float  # the highest of the alone, the capacity and the window bounds
    p95_s: float  # the higher of the alone and the window bounds
    jobs: int  # jobs some card of the pool can run (the others have no floor and are left out)
    alone_mean_s: float  # the mean if every job had the pool to itself
    capacity_mean_s: float = 0.0  # the cards' hours over one horizon after the last arrival
    window_mean_s: float = 0.0  # jobs that must wait, counted window by window of arrivals
    window_p95_s: float = 0.0


@dataclass(frozen=True)
class _Kind:
    """Cards that run a job alike: the card, its VRAM, and its node's RAM, disk, link and cache."""

    card: str
    vram: int
    ram: int
    disk_bytes_per_s: float
    net_bytes_per_s: float
    cached: frozenset[str]

    def ready(self, model_id: str, first_arrival: float) -> float:
        """The earliest a card of this kind can start rendering `model_id`: the model's first job
        arrives at `first_arrival`, and the first attempt on a card reads the weights from disk
        or waits for their download (which cannot start before the trace does)."""
        weight = get_model(model_id).weight_bytes
        if model_id in self.cached:
            return first_arrival + weight / self.disk_bytes_per_s
        return max(first_arrival, weight / self.net_bytes_per_s)


@dataclass(frozen=True)
class _Group:
    """Cards of one kind within a band of drawn speed."""

    kind: _Kind
    fastest: SimAgent  # none of the group renders faster
    count: int


def latency_floor(
    pool: PoolSpec, trace: Iterable[TraceJob], seed: int = 0, truth: TruthConfig | None = None
) -> LatencyFloor:
    """Mean and p95 latency no policy can go under on this pool and trace, for this seed."""
    config = truth or TruthConfig()
    groups = _speed_groups(build_cluster(pool, config, seed)[1])
    kinds: dict[_Kind, list[int]] = {}  # kind -> its groups' numbers
    for number, group in enumerate(groups):
        kinds.setdefault(group.kind, []).append(number)
    # The trace's jobs by shape, with their luck, in one pass (the luck is the engine's, job by job).
    shapes: dict[tuple[object, ...], _ShapeJobs] = {}
    arrivals_all: list[float] = []
    for index, job in enumerate(trace):
        noise = job_noise(config, seed, index, job.work.model_id)
        shape = shapes.get(job.work.key)
        if shape is None:
            shape = shapes[job.work.key] = _ShapeJobs(job.work, _options(job.work, groups, kinds))
        shape.add(index, noise)
        arrivals_all.append(job.t)
    # Jobs of one model with the same render times on every group (before their own render luck)
    # form a lot: under any prices they choose the same group, which makes the bounds cheap.
    lot_numbers: dict[tuple[str, tuple[float, ...], tuple[float, ...]], int] = {}
    job_lots = np.full(len(arrivals_all), -1)
    job_lucks = np.ones(len(arrivals_all))
    for shape in shapes.values():
        for members, (whole, moved) in shape.renders(len(groups)):
            if min(whole) < math.inf:
                lot_key = (shape.work.model_id, whole, moved)
                job_lots[members] = lot_numbers.setdefault(lot_key, len(lot_numbers))
        job_lucks[shape.indices] = shape.render_lucks
    runnable = np.nonzero(job_lots >= 0)[0]  # in trace order, so by arrival
    if len(runnable) == 0:
        return LatencyFloor(0.0, 0.0, 0, 0.0)
    arrivals = np.array(arrivals_all)[runnable]
    lots = job_lots[runnable]
    lucks = job_lucks[runnable]
    first_arrivals: dict[str, float] = {}
    firsts = _first_per_lot(lots, arrivals, len(lot_numbers))
    for (model_id, _, _), first in zip(lot_numbers, firsts, strict=True):
        first_arrivals[model_id] = min(first, first_arrivals.get(model_id, math.inf))
    lot_keys = list(lot_numbers)
    work = Workload(
        arrivals=arrivals,
        alone=np.zeros(0),
        lucks=lucks,
        lots=lots,
        whole=np.array([whole for _, whole, _ in lot_keys], dtype=float),
        renders=np.array([moved for _, _, moved in lot_keys], dtype=float),
        ready=np.array(
            [
                [group.kind.ready(model_id, first_arrivals[model_id]) for group in groups]
                for model_id, _, _ in lot_keys
            ]
        ),
        counts=np.array([group.count for group in groups], dtype=float),
        speeds=np.array([group.fastest.flops_per_s for group in groups]),
        priced=_price_shapes(groups),
        move_s=config.checkpoint_write_s + config.checkpoint_read_s,
        setup_s=OVERHEAD_S,
    )
    alone = _alone(work)
    work = replace(work, alone=alone)
    alone_mean = float(alone.mean())
    by_renders: dict[tuple[float, ...], list[float]] = {}
    for lot, luck in zip(lots.tolist(), lucks.tolist(), strict=True):
        _, whole, moved = lot_keys[lot]
        by_renders.setdefault(whole + moved, []).append(luck)
    counts = [group.count for group in groups]
    capacity, prices = _capacity_mean(by_renders, counts, float(arrivals[-1]), alone_mean)
    windows = Windows(work)
    counted = window_floor(work, windows)
    # The window sums try the best prices the whole trace found, beside their own shapes.
    window_mean = max(counted.sum_s, window_sum(work, windows, prices)) / len(alone)
    alone_p95 = percentile(sorted(alone.tolist()), 95)
    return LatencyFloor(
        mean_s=max(alone_mean, capacity, window_mean),
        p95_s=max(alone_p95, counted.p95_s),
        jobs=len(alone),
        alone_mean_s=alone_mean,
        capacity_mean_s=capacity,
        window_mean_s=window_mean,
        window_p95_s=counted.p95_s,
    )


def _alone(work: Workload) -> np.ndarray:
    """Each job's latency with the pool to itself: the earliest it can finish on one card, from its
    arrival or once its model is ready there; or, moving between cards as faster ones become ready
    (at the moved pace, plus a move's checkpoint and set-up), at the pace of the fastest one ready."""
    alone = np.zeros(len(work.arrivals))
    for lot, (whole, moved, readies) in enumerate(zip(work.whole, work.renders, work.ready, strict=True)):
        members = np.nonzero(work.lots == lot)[0]
        starts = work.arrivals[members]
        lucks = work.lucks[members]
        levels = np.unique(readies[np.isfinite(whole)])
        staying = np.full(len(members), np.inf)
        done = np.zeros(len(members))  # the share rendered so far, moving
        finish = np.full(len(members), np.inf)
        for number, level in enumerate(levels):
            opened = readies <= level
            staying = np.minimum(staying, np.maximum(starts, level) + float(whole[opened].min()) * lucks)
            until = float(levels[number + 1]) if number + 1 < len(levels) else np.inf
            begin = np.maximum(starts, level)
            seconds = float(moved[opened].min()) * lucks
            ends = begin + (1.0 - done) * seconds
            ending = np.isinf(finish) & (ends <= until)
            finish[ending] = ends[ending]
            done = np.where(begin < until, done + np.maximum(until - begin, 0.0) / seconds, done)
        moving = finish + work.move_s + work.setup_s * lucks
        alone[members] = np.minimum(staying, moving) - starts
    return alone


def _price_shapes(groups: list[_Group]) -> tuple[np.ndarray, ...]:
    # Prices on the groups at least so fast, or with at least so much VRAM (the rest free): where
    # the big or fast cards are scarce, the jobs that need them queue for them.
    speeds = np.array([group.fastest.spec.half_tflops for group in groups])
    vrams = np.array([group.kind.vram for group in groups])
    masks = {tuple(speeds >= speed) for speed in speeds} | {tuple(vrams >= vram) for vram in vrams}
    return tuple(np.array(mask) for mask in sorted(masks))


def _first_per_lot(lots: np.ndarray, arrivals: np.ndarray, count: int) -> np.ndarray:
    first = np.full(count, np.inf)
    np.minimum.at(first, lots, arrivals)
    return first


class _ShapeJobs:
    """The jobs of one work shape: which profiles fit each job's memory luck on each kind of card."""

    def __init__(self, work: WorkSize, options: list[_Option]) -> None:
        self.work = work
        self.options = options
        self.index_list: list[int] = []
        self.lucks: list[tuple[float, float, float]] = []  # render, VRAM, RAM

    def add(self, index: int, noise: JobNoise) -> None:
        self.index_list.append(index)
        self.lucks.append((noise.render, noise.vram, noise.ram))

    @property
    def indices(self) -> np.ndarray:
        return np.array(self.index_list, dtype=int)

    @property
    def render_lucks(self) -> np.ndarray:
        return np.array([luck[0] for luck in self.lucks])

    def renders(self, groups: int) -> list[tuple[np.ndarray, tuple[tuple[float, ...], tuple[float, ...]]]]:
        """(the trace indices of jobs, their best renders per group, staying and moved) for each
        pattern of fits."""
        lucks = np.array(self.lucks)
        fits = np.array([_fit(option, lucks[:, 1], lucks[:, 2]) for option in self.options]).T
        if not self.options:
            fits = np.zeros((len(lucks), 0), dtype=bool)
        # Each job's fits as bytes, so that finding the distinct patterns is one flat sort.
        packed = np.ascontiguousarray(np.packbits(fits, axis=1))
        keys = packed.view(np.dtype((np.void, packed.shape[1]))).reshape(-1)
        _, first, which = np.unique(keys, return_index=True, return_inverse=True)
        order = np.argsort(which, kind="stable")
        bounds = np.searchsorted(which[order], np.arange(len(first) + 1))
        indices = self.indices
        return [
            (
                indices[order[bounds[number] : bounds[number + 1]]],
                _best_renders(self.options, tuple(fits[row].tolist()), groups),
            )
            for number, row in enumerate(first)
        ]


def _fit(option: _Option, vram_lucks: np.ndarray, ram_lucks: np.ndarray) -> np.ndarray:
    """Whether each job fits the option's card and node: MemoryPeaks.lucky over many jobs at once
    (the same arithmetic, so the same bytes)."""
    (text, text_work), (denoise, denoise_work), (decode, decode_work) = option.need.phases
    peak = np.maximum(
        np.maximum(text + text_work * vram_lucks, denoise + denoise_work * vram_lucks),
        decode + decode_work * vram_lucks,
    )
    vram = np.trunc(CONTEXT + peak)
    ram = np.trunc(option.need.ram_weights + option.need.ram_working * ram_lucks)
    return (vram <= option.vram) & (ram <= option.ram)


def _speed_groups(agents: list[SimAgent]) -> list[_Group]:
    kinds: dict[_Kind, list[SimAgent]] = {}
    for agent in agents:
        node = agent.node
        kind = _Kind(
            agent.spec.name, agent.vram_bytes, node.ram_bytes, node.disk_bytes_per_s, node.net_bytes_per_s,
            node.cached,
        )  # fmt: skip
        kinds.setdefault(kind, []).append(agent)
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
    decodes: tuple[float, ...]  # the decoding's share of each of those (the same under every profile)
    need: MemoryPeaks  # before the job's memory luck (MemoryPeaks.lucky applies it, as the engine does)
    vram: int  # the card's
    ram: int  # its node's


def _options(work: WorkSize, groups: list[_Group], kinds: dict[_Kind, list[int]]) -> list[_Option]:
    # Every (kind of card, profile) that could run a job of this shape; its luck decides which fit.
    preset = get_model(work.model_id)
    found: list[_Option] = []
    for members in kinds.values():
        agent = groups[members[0]].fastest
        if arch_problem(preset, agent.view) is not None:
            continue
        for profile in SPEED_ORDER:
            need = memory_peaks(work.model_id, profile, work.size)
            phases = [render_phases(work, profile, groups[number].fastest.flops_per_s) for number in members]
            renders = tuple(
                (number, phase.seconds(work.steps)) for number, phase in zip(members, phases, strict=True)
            )
            decodes = tuple(phase.decode_s for phase in phases)
            found.append(_Option(renders, decodes, need, agent.vram_bytes, agent.node.ram_bytes))
    return found


def _best_renders(
    options: list[_Option], fits: tuple[bool, ...], groups: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per group, the fastest render among the profiles that fit (inf where none does); and the
    same with the decoding at the pace of the card that decodes fastest: a job moved between cards
    by a preemption renders each step once and decodes once, on its last card, whichever that is."""
    renders = [math.inf] * groups
    decodes = [math.inf] * groups
    for option, fit in zip(options, fits, strict=True):
        if fit:
            for (group, render_s), decode_s in zip(option.renders, option.decodes, strict=True):
                renders[group] = min(renders[group], render_s)
                decodes[group] = decode_s
    fastest = min(decodes)
    moved = tuple(
        render - decode + fastest if render < math.inf else math.inf
        for render, decode in zip(renders, decodes, strict=True)
    )
    return tuple(renders), moved


def _capacity_mean(
    lots: dict[tuple[float, ...], list[float]], counts: list[int], span: float, alone: float
) -> tuple[float, np.ndarray]:
    """The best Lagrangian bound found on the mean latency (docs/scheduler.md); never above
    the true optimum, whatever prices and horizons are tried, so the search needs no proof.

    For a horizon D and prices p >= 0 on each group's card-seconds, every job costs the least of D
    and, over the groups, its render x (1 + p); the bound is the jobs' sum less the prices times
    every group's hours, (span + D) x cards. Prices climb where the jobs' choices overrun a group's
    hours and fall where they leave some, in steps scaled per group by its past overruns (AdaGrad),
    and carry over from one horizon to the next (horizons grow, the best prices change slowly).
    """
    both = np.array(list(lots), dtype=float)  # lot x (group, staying then moved), inf where it cannot run
    renders, moved = both[:, : len(counts)], both[:, len(counts) :]
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
    best_prices = np.zeros(len(counts))
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
            # A job that moves renders at the moved pace but sets up again (its checkpoint left out).
            cost = np.minimum(priced[rows, chosen], (moved * (1 + prices)).min(axis=1) + OVERHEAD_S)
            # Jobs of a lot whose luck is under D / cost render; the others cost D.
            cut = np.searchsorted(keyed, offsets + np.minimum(horizon / cost, top)) - starts
            lucky = sums[starts + cut] - sums[starts]
            value = float((cost * lucky).sum() + horizon * (sizes - cut).sum() - (prices * hours).sum())
            if value > best:
                best, best_prices = value, prices.copy()
            used = np.bincount(chosen, weights=renders[rows, chosen] * lucky, minlength=len(counts))
            overrun = (used - hours) / hours
            if not prices.any() and (overrun <= 0).all():
                break  # no card is short at zero prices: every further step is this one again
            squares += overrun * overrun
            prices = np.maximum(0.0, prices + PRICE_RATE * overrun / np.sqrt(squares))
    return best / jobs, best_prices
