"""A seeded family of random scenarios (pool + trace) for judging policies beyond the references.

`scenario(seed)` draws one: a consumer, datacenter or mixed pool of 4-120 GPUs and 100-1,000
jobs at 60-95% offered load, with the features its `traits` name; `family()` gives FAMILY_SIZE of
them from FAMILY_SEED. Deterministic for a seed. Ranges and reasons: docs/simulator.md.

    python -m scheduler.sim.family --seed N --out DIR   (writes DIR/pool.json, DIR/trace.jsonl)
    python -m scheduler.sim.family --list [--count 40]  (one line per scenario)
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from models.catalogue import Output, get_model
from models.gpus import GIB, find_gpu
from scheduler.preemption import priority_class
from scheduler.sim.family_pools import (
    LOW_RAM_GB,
    SLOW_DISK_GBPS,
    SLOW_LINK_GBPS,
    draw_pool,
    draw_pool_features,
    shrink_pool,
    with_cache,
)
from scheduler.sim.family_traces import (
    LONG_FACTOR,
    Kind,
    arrivals,
    draw_models,
    job_kinds,
    window_arrivals,
)
from scheduler.sim.formats import PoolSpec, TraceJob, write_pool, write_trace
from scheduler.sim.generator import cdf, job_nodes, job_work, pick, pool_capacity

FAMILY_SEED = 1000
FAMILY_SIZE = 40
LOAD_RANGE = (0.6, 0.95)
JOBS_RANGE = (120, 800)  # drawn log-uniformly; a batch dump adds its own
BATCH_JOBS = (100, 300)  # "hundreds of jobs of one model by one owner at one instant"
MIN_JOBS, MAX_JOBS = 100, 1000
MIN_GPUS = 4
MIN_SPAN_S, MAX_SPAN_S = 3600.0, 24 * 3600.0  # under an hour, downloads alone decide everything
OVERLOAD_LOAD = (1.4, 1.9)  # offered load inside the equal owners' overload window
OVERLOAD_FLOOR = 1.05  # a window whose drawn jobs offer less than this is drawn again
OWNERS = ("ana", "ben", "chen", "dara", "eli", "fay", "gus", "hana")
HIGH, NORMAL, LOW = 90, 50, 20  # priorities of the classes, when a scenario has several
TRAITS = (
    "consumer", "datacenter", "mixed", "old-cards", "slow-links", "slow-disks", "low-ram",
    "warm-cache", "cold-cache", "poisson", "bursty", "diurnal", "batch-dump", "priority-classes",
    "equal-owners-overload", "long-videos",
)  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    """One member of the family: its pool, its jobs (in time order) and what it was drawn to have."""

    name: str  # "family-1007"
    seed: int
    pool: PoolSpec
    jobs: tuple[TraceJob, ...]
    traits: frozenset[str]  # of TRAITS, each read off the pool and jobs themselves
    # Offered work / the pool's capacity over [0, span_s] (generator's measure), and no part of the
    # pool is offered more of its own by the jobs only it can run (confined_seconds).
    load: float
    overload: tuple[float, float] | None  # the equal owners' window of offered load > 1, else None
    span_s: float = 0.0  # the trace's length: load is measured over it


@dataclass(frozen=True)
class _Plan:
    """What a scenario's trace is drawn to: how many jobs, over how long, which of them a batch."""

    background: int
    batch: int
    batch_kind: Kind | None
    span_s: float


def scenario(seed: int) -> Scenario:
    """The family's scenario for `seed`: the same seed gives the same scenario."""
    rng = random.Random(f"family/{seed}")
    name = f"family-{seed}"
    features = draw_pool_features(rng)
    equal_owners = rng.random() < 0.25
    batch = not equal_owners and rng.random() < 0.35
    classes = not equal_owners and rng.random() < 0.5
    long_videos = rng.random() < 0.35
    arrival = "poisson" if equal_owners else rng.choice(("poisson", "bursty", "diurnal"))
    warm = rng.random() < 0.5
    load = round(rng.uniform(*LOAD_RANGE), 3)
    jobs = round(math.exp(rng.uniform(*(math.log(n) for n in JOBS_RANGE))))
    batch_jobs = rng.randint(*BATCH_JOBS) if batch else 0
    zipf_s = rng.uniform(0.6, 1.3)
    models = draw_models(rng, long_videos)
    pool = draw_pool(rng, name, features)
    kinds = job_kinds(pool, models, zipf_s, long_videos)
    plan = _plan(kinds, jobs, batch_jobs, load, pool)
    while plan.span_s < MIN_SPAN_S and pool.gpu_count > MIN_GPUS:
        # Too many cards for the jobs: the same farm, smaller, so the trace lasts long enough.
        smaller = shrink_pool(pool, plan.span_s / MIN_SPAN_S, MIN_GPUS)
        if smaller == pool:
            break
        pool = smaller
        kinds = job_kinds(pool, models, zipf_s, long_videos)
        plan = _plan(kinds, jobs, batch_jobs, load, pool)
    # The smallest pool still too fast for the jobs: more jobs (up to MAX_JOBS) fill the hour.
    plan = _plan(kinds, jobs, batch_jobs, load, pool, grow=True)
    pool = with_cache(rng, pool, models, 0.4 if warm else 0.0)
    for attempt in itertools.count():
        trace_rng = random.Random(f"family/{seed}/trace/{attempt}")
        drawn, overload = _draw_jobs(trace_rng, pool, kinds, plan, load, arrival, equal_owners, classes)
        if overload is None or offered_load(pool, drawn, *overload) >= OVERLOAD_FLOOR:
            break
    span = max(_offered(pool, drawn) / (load * pool_capacity(pool)), _confined_of(pool, drawn) / load)
    return Scenario(
        name, seed, pool, tuple(drawn), traits_of(pool, drawn, arrival, features.mix, overload),
        load, overload, round(span, 3),
    )  # fmt: skip


def family(count: int = FAMILY_SIZE, first_seed: int = FAMILY_SEED) -> list[Scenario]:
    """`count` scenarios of seeds first_seed, first_seed + 1, ..."""
    return [scenario(seed) for seed in range(first_seed, first_seed + count)]


def offered_load(pool: PoolSpec, jobs: Iterable[TraceJob], start: float, end: float) -> float:
    """The work of the jobs submitted in [start, end) over what the pool renders in that time."""
    inside = [job for job in jobs if start <= job.t < end]
    return _offered(pool, inside) / (pool_capacity(pool) * (end - start))


def traits_of(
    pool: PoolSpec, jobs: Sequence[TraceJob], arrival: str, mix: str, overload: tuple[float, float] | None
) -> frozenset[str]:
    """The traits a scenario has, read off its pool and jobs (and how its arrivals were drawn)."""
    traits = {mix, arrival}
    cards = [find_gpu(gpu) for node in pool.nodes for gpu in node.gpus]
    if any(not card.caps.bf16 for card in cards):
        traits.add("old-cards")
    if any(node.net_bytes_per_s * 8 / 1e9 <= SLOW_LINK_GBPS for node in pool.nodes):
        traits.add("slow-links")
    if any(node.disk_bytes_per_s / 1e9 <= SLOW_DISK_GBPS for node in pool.nodes):
        traits.add("slow-disks")
    if any(node.ram_bytes <= LOW_RAM_GB * GIB for node in pool.nodes):
        traits.add("low-ram")
    used = {job.work.model_id for job in jobs}
    traits.add("warm-cache" if any(node.cached & used for node in pool.nodes) else "cold-cache")
    if batch_dump(jobs) is not None:
        traits.add("batch-dump")
    levels = {priority_class(job.priority) for job in jobs}
    if len(levels) > 1 and max(levels) == priority_class(HIGH):
        traits.add("priority-classes")
    if overload is not None:
        traits.add("equal-owners-overload")
    if any(_is_long(job) for job in jobs) and any(_is_image(job) for job in jobs):
        traits.add("long-videos")
    return frozenset(traits)


def batch_dump(jobs: Sequence[TraceJob]) -> tuple[float, int] | None:
    """The instant and size of the largest group of jobs of one model and owner submitted at one
    instant, when it holds at least BATCH_JOBS[0] jobs; else None."""
    groups: dict[tuple[float, str, str], int] = {}
    for job in jobs:
        key = (job.t, job.work.model_id, job.owner)
        groups[key] = groups.get(key, 0) + 1
    if not groups:
        return None
    (t, _, _), size = max(groups.items(), key=lambda item: item[1])
    return (t, size) if size >= BATCH_JOBS[0] else None


def _plan(
    kinds: list[Kind], jobs: int, batch_jobs: int, load: float, pool: PoolSpec, grow: bool = False
) -> _Plan:
    # The span that makes `jobs` jobs (and the batch) offer `load`, within the limits.
    mean = sum(k.weight * k.flops for k in kinds) / sum(k.weight for k in kinds)
    batch_kind = _batch_kind(kinds) if batch_jobs else None
    capacity = pool_capacity(pool)
    weights = sum(k.weight for k in kinds)

    def span_of(jobs: int, batch_jobs: int) -> float:
        # The whole pool's time for the expected jobs, or the time of the part of it that alone
        # runs some of them where that is longer.
        batch_flops = batch_jobs * batch_kind.flops if batch_kind else 0.0
        works = [(k.nodes, jobs * k.weight / weights * k.flops) for k in kinds]
        if batch_kind is not None:
            works.append((batch_kind.nodes, batch_flops))
        return max((jobs * mean + batch_flops) / (load * capacity), confined_seconds(pool, works) / load)

    span = span_of(jobs, batch_jobs)
    if span < MIN_SPAN_S and grow:
        jobs = min(MAX_JOBS - batch_jobs, round(jobs * MIN_SPAN_S / span))
    elif span > MAX_SPAN_S:
        jobs = max(MIN_JOBS, round(jobs * MAX_SPAN_S / span))
        batch_jobs = min(batch_jobs, max(BATCH_JOBS[0], round(batch_jobs * MAX_SPAN_S / span)))
    return _Plan(jobs, batch_jobs, batch_kind, span_of(jobs, batch_jobs))


def _batch_kind(kinds: list[Kind]) -> Kind:
    # A batch is of a cheap kind (images, short clips): the most popular among the cheaper half.
    cheap = sorted(kinds, key=lambda k: k.flops)[: max(1, len(kinds) // 2)]
    return max(cheap, key=lambda k: k.weight)


def _draw_jobs(
    rng: random.Random,
    pool: PoolSpec,
    kinds: list[Kind],
    plan: _Plan,
    load: float,
    arrival: str,
    equal_owners: bool,
    classes: bool,
) -> tuple[list[TraceJob], tuple[float, float] | None]:
    """The jobs in time order, stretched so they offer exactly `load`; the overload window too."""
    span = plan.span_s
    rate = plan.background / span
    window: tuple[float, float] | None = None
    if equal_owners:
        width = rng.uniform(0.15, 0.3)
        start = rng.uniform(0.1, 0.9 - width)
        most = (load - 0.15 * (1 - width)) / width  # leaves the rest of the trace 15% load
        inside = rng.uniform(OVERLOAD_LOAD[0], min(OVERLOAD_LOAD[1], most))
        outside = (load - inside * width) / (1 - width)
        window = (start * span, (start + width) * span)
        times = window_arrivals(rng, rate * outside / load, rate * inside / load, window, span)
    else:
        times = arrivals(rng, rate, span, arrival)
    owners = OWNERS[: rng.randint(3, 5) if equal_owners else rng.randint(2, len(OWNERS))]
    owner_cdf = cdf(
        [1.0 if equal_owners else 1 / rank ** rng.uniform(0.3, 1.0) for rank in range(1, 9)][: len(owners)]
    )
    kind_cdf = cdf([k.weight for k in kinds])
    high, low = rng.uniform(0.05, 0.15), rng.uniform(0.1, 0.3)
    rows: list[tuple[float, Kind, str, int]] = []
    first = rng.randrange(len(owners))
    for index, t in enumerate(times):
        # Equal owners take turns, so each offers the same number of jobs of the same mix.
        owner = owners[(first + index) % len(owners)] if equal_owners else owners[pick(rng, owner_cdf)]
        priority = NORMAL
        if classes:
            draw = rng.random()
            priority = HIGH if draw < high else LOW if draw < high + low else NORMAL
        rows.append((t, kinds[pick(rng, kind_cdf)], owner, priority))
    if plan.batch and plan.batch_kind is not None:
        at = rng.uniform(0.1, 0.6) * span
        owner = rng.choice(owners)
        rows += [(at, plan.batch_kind, owner, LOW if classes else NORMAL)] * plan.batch
    rows.sort(key=lambda row: row[0])
    # Stretch time so the jobs drawn offer exactly `load` over the trace, not only on average.
    whole = sum(kind.flops for _, kind, _, _ in rows) / (load * pool_capacity(pool) * span)
    confined = confined_seconds(pool, ((kind.nodes, kind.flops) for _, kind, _, _ in rows))
    stretch = max(whole, confined / (load * span))
    jobs = [
        TraceJob(f"j{index:05d}", round(t * stretch, 3), kind.work, priority, owner)
        for index, (t, kind, owner, priority) in enumerate(rows)
    ]
    if window is not None:
        window = (round(window[0] * stretch, 3), round(window[1] * stretch, 3))
    return jobs, window


def confined_seconds(pool: PoolSpec, works: Iterable[tuple[frozenset[str], float]]) -> float:
    """The longest that a part of the pool (a set of its node kinds, short of all) needs for the
    work that only it can run: over each such part, the FLOPs of the works (node kinds that can
    run it, FLOPs) whose kinds all lie in it, over its FLOP/s. Beside the whole pool's time, this
    makes the offered load honest where some jobs fit only some nodes: those load their nodes,
    not the pool (family-1003 was drawn at 0.83 of the pool while its 3080 Ti nodes alone, the
    only ones with the RAM for 175 of its jobs, were offered 1.6 of theirs)."""
    by_nodes: dict[frozenset[str], float] = {}
    for nodes, flops in works:
        by_nodes[nodes] = by_nodes.get(nodes, 0.0) + flops
    capacity = {node.name: pool_capacity(PoolSpec(pool.name, (node,))) for node in pool.nodes}
    names = sorted(capacity)
    longest = 0.0
    # Only a union of some works' kinds can be the longest; the subsets of a few kinds are few.
    for size in range(1, len(names)):
        for part in itertools.combinations(names, size):
            inside = frozenset(part)
            flops = sum(f for nodes, f in by_nodes.items() if nodes <= inside)
            if flops > 0:
                longest = max(longest, flops / sum(capacity[name] for name in part))
    return longest


def _confined_of(pool: PoolSpec, jobs: Sequence[TraceJob]) -> float:
    """confined_seconds of the jobs, each kind of work's nodes and FLOPs worked out once."""
    per_kind: dict[tuple[object, ...], tuple[frozenset[str], float]] = {}
    for job in jobs:
        if job.work.key not in per_kind:
            per_kind[job.work.key] = (job_nodes(pool, job.work), job_work(pool, job.work) or 0.0)
    counts = Counter(job.work.key for job in jobs)
    return confined_seconds(pool, ((nodes, flops * counts[key]) for key, (nodes, flops) in per_kind.items()))


def _offered(pool: PoolSpec, jobs: Iterable[TraceJob]) -> float:
    works: dict[tuple[object, ...], float] = {}
    total = 0.0
    for job in jobs:
        key = job.work.key
        if key not in works:
            works[key] = job_work(pool, job.work) or 0.0
        total += works[key]
    return total


def _is_long(job: TraceJob) -> bool:
    preset = get_model(job.work.model_id)
    return preset.output is Output.VIDEO and job.work.frames >= LONG_FACTOR * preset.defaults.video_length


def _is_image(job: TraceJob) -> bool:
    return get_model(job.work.model_id).output is Output.IMAGE


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scheduler.sim.family", description=__doc__)
    parser.add_argument("--seed", type=int, default=FAMILY_SEED)
    parser.add_argument("--out", type=Path, help="folder for pool.json and trace.jsonl")
    parser.add_argument("--list", action="store_true", help="describe the family, one line each")
    parser.add_argument("--count", type=int, default=FAMILY_SIZE)
    args = parser.parse_args(argv)
    if args.list:
        for member in family(args.count, args.seed):
            print(describe(member))
        return 0
    if args.out is None:
        parser.error("--out DIR is needed (or --list)")
    member = scenario(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_pool(member.pool, args.out / "pool.json")
    write_trace(member.jobs, args.out / "trace.jsonl")
    print(f"{describe(member)}\nwritten to {args.out}/pool.json and {args.out}/trace.jsonl")
    return 0


def describe(member: Scenario) -> str:
    """One line: name, GPUs, jobs, span, load and traits."""
    return (
        f"{member.name}: {member.pool.gpu_count} GPUs, {len(member.jobs)} jobs over "
        f"{member.span_s / 3600:.1f} h at load {member.load}: {', '.join(sorted(member.traits))}"
    )


if __name__ == "__main__":
    sys.exit(main())
