"""Synthetic traces: Poisson or bursty arrivals, Zipf model popularity, a size mix, several owners.

The arrival rate is calibrated so the offered work is `load` x the pool's capacity, both measured
with the truth model at mean card efficiency: capacity is the pool's summed FLOP/s; a job's work
is its true render seconds x FLOP/s on the pool's cards that can run it (averaged, so offloading
on small cards counts), weights loading left out. Deterministic for a seed.

    python -m scheduler.sim.generator --pool P --hours H [--load 0.85] [--arrival poisson|bursty]
        [--models a,b,...] [--seed N] --out T.jsonl
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.catalogue import ModelPreset, Output, get_model
from models.gpus import find_gpu
from models.memory import JobSize, estimate
from models.profiles import SPEED_ORDER, Profile
from models.work import WorkSize
from scheduler.sim.formats import PoolSpec, SimInputError, TraceJob, load_pool, write_trace
from scheduler.sim.truth import TruthConfig, render_seconds

# Most popular first: Zipf ranks follow this order.
DEFAULT_MODELS = (
    "wan2.1-t2v-1.3b",
    "flux.1-schnell",
    "flux.1-dev",
    "wan2.1-t2v-14b",
    "ltx-video-2b",
    "wan2.2-ti2v-5b",
    "qwen-image",
    "hunyuan-video-t2v-13b",
)
DEFAULT_OWNERS = ("alice", "bob", "carol", "dave", "erin")
PRIORITIES = ((50, 0.8), (80, 0.1), (20, 0.1))  # (priority, share)
BURST_FACTOR = 2.5  # bursts arrive this much faster than the mean, lulls at a quarter of it
BURST_MEAN_S = 900.0
LULL_MEAN_S = 1800.0
_SIZE_NAMES = ("small", "default", "large")


@dataclass(frozen=True)
class TraceSpec:
    """A generated trace's parameters: what `{"generate": {...}}` in a .json trace file holds."""

    pool: PoolSpec
    hours: float
    load: float = 0.85
    arrival: str = "poisson"  # or "bursty"
    models: tuple[str, ...] = DEFAULT_MODELS
    zipf_s: float = 1.1
    owners: tuple[str, ...] = DEFAULT_OWNERS
    owner_zipf_s: float = 0.5  # owners' demand is skewed too, mildly
    size_mix: tuple[float, float, float] = (0.3, 0.5, 0.2)  # small, default, large
    seed: int = 0


def generate_trace(
    pool: PoolSpec,
    models: Sequence[str] = DEFAULT_MODELS,
    hours: float = 1.0,
    load: float = 0.85,
    arrival: str = "poisson",
    zipf_s: float = 1.1,
    owners: Sequence[str] = DEFAULT_OWNERS,
    size_mix: tuple[float, float, float] = (0.3, 0.5, 0.2),
    seed: int = 0,
) -> list[TraceJob]:
    """A trace of `hours` whose offered work is `load` x the pool's capacity."""
    spec = TraceSpec(
        pool, hours, load, arrival, tuple(models), zipf_s, tuple(owners), size_mix=size_mix, seed=seed
    )
    return list(iter_trace(spec))


def iter_trace(spec: TraceSpec) -> Iterator[TraceJob]:
    """The jobs of `spec` in time order, generated lazily (a day on a big farm is a million)."""
    if spec.arrival not in ("poisson", "bursty"):
        raise ValueError(f"arrival must be 'poisson' or 'bursty', not {spec.arrival!r}")
    kinds = _job_kinds(spec)
    rate = arrival_rate(spec.pool, kinds, spec.load)
    rng = random.Random(spec.seed)
    kind_cdf = cdf([weight for _, weight in kinds])
    owner_cdf = cdf(_zipf(len(spec.owners), spec.owner_zipf_s))
    priority_cdf = cdf([share for _, share in PRIORITIES])
    end = spec.hours * 3600
    for index, t in enumerate(arrival_times(rng, rate, end, spec.arrival)):
        yield TraceJob(
            job_id=f"j{index:07d}",
            t=round(t, 3),
            work=kinds[pick(rng, kind_cdf)][0],
            priority=PRIORITIES[pick(rng, priority_cdf)][0],
            owner=spec.owners[pick(rng, owner_cdf)],
        )


def arrival_rate(pool: PoolSpec, kinds: Sequence[tuple[WorkSize, float]], load: float) -> float:
    """Jobs per second so that offered work = load x capacity (see the module docstring)."""
    capacity = pool_capacity(pool)
    work = 0.0
    weights = 0.0
    for kind, weight in kinds:
        terms = _work_terms(pool, kind)
        if terms is not None:  # a job no card can run adds no work anyone could do
            work += weight * terms[0] / terms[1]
            weights += weight
    if work == 0:
        raise ValueError("no card of the pool can run any job of the mix")
    return load * capacity / (work / weights)


def pool_capacity(pool: PoolSpec) -> float:
    """The pool's summed true FLOP/s at mean card efficiency, slow nodes counted in."""
    speed = _card_speeds(pool)
    return sum(speed[find_gpu(gpu).name] * node.count for node in pool.nodes for gpu in node.gpus)


def job_work(pool: PoolSpec, work: WorkSize) -> float | None:
    """A job's offered work in FLOPs: its true render seconds x FLOP/s, averaged over the pool's
    cards that can run it (weights loading left out); None when no card of the pool can."""
    terms = _work_terms(pool, work)
    return None if terms is None else terms[0] / terms[1]


def job_nodes(pool: PoolSpec, work: WorkSize) -> frozenset[str]:
    """The names of the pool's node kinds with a card that can run the job, by job_work's rule."""
    preset = get_model(work.model_id)
    return frozenset(
        node.name
        for node in pool.nodes
        if any(
            _fastest_fit(preset, work.size, find_gpu(name).vram_bytes, node.ram_bytes) is not None
            for name in node.gpus
        )
    )


def _work_terms(pool: PoolSpec, work: WorkSize) -> tuple[float, float] | None:
    # The FLOPs summed over the cards that can run the job, and how many cards those are.
    speed = _card_speeds(pool)
    preset = get_model(work.model_id)
    costs = []
    for node in pool.nodes:
        for name in node.gpus:
            gpu = find_gpu(name)
            profile = _fastest_fit(preset, work.size, gpu.vram_bytes, node.ram_bytes)
            if profile is not None:
                seconds = render_seconds(work, profile, speed[gpu.name])
                costs.append((seconds * speed[gpu.name], node.count))
    if not costs:
        return None
    return sum(c * n for c, n in costs), sum(n for _, n in costs)


def _card_speeds(pool: PoolSpec) -> dict[str, float]:
    # Each card's FLOP/s at mean efficiency, slow nodes' share counted in.
    config = TruthConfig()
    slow = 1 + config.slow_node_share * (config.slow_node_factor - 1)
    names = {find_gpu(gpu).name for node in pool.nodes for gpu in node.gpus}
    return {name: find_gpu(name).half_tflops * 1e12 * config.mean_efficiency / slow for name in names}


def expand_spec(path: Path, data: Any) -> Iterator[TraceJob]:
    """The trace a `{"generate": {...}}` file describes; its `pool` is relative to the file."""
    params = data.get("generate") if isinstance(data, dict) else None
    if not isinstance(params, dict):
        raise SimInputError(f'{path}: a .json trace is {{"generate": {{...}}}}; a trace of jobs is .jsonl')
    allowed = set(TraceSpec.__dataclass_fields__)
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise SimInputError(
            f"{path}: generate: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}"
        )
    if "pool" not in params or "hours" not in params:
        raise SimInputError(f"{path}: generate needs 'pool' and 'hours'")
    options = dict(params)
    options["pool"] = load_pool(path.parent / str(params["pool"]))
    for key in ("models", "owners", "size_mix"):
        if key in options:
            options[key] = tuple(options[key])
    try:
        spec = TraceSpec(**options)
        for model in spec.models:
            get_model(model)
        return iter_trace(spec)
    except (TypeError, ValueError, LookupError) as error:
        raise SimInputError(f"{path}: generate: {error}") from None


def _job_kinds(spec: TraceSpec) -> list[tuple[WorkSize, float]]:
    # Every kind of work with its probability: model Zipf x size mix.
    popularity = _zipf(len(spec.models), spec.zipf_s)
    total = sum(popularity)
    kinds = []
    for model, weight in zip(spec.models, popularity, strict=True):
        preset = get_model(model)
        for work, share in zip(work_sizes(preset), spec.size_mix, strict=True):
            kinds.append((work, weight / total * share))
    return kinds


def work_sizes(preset: ModelPreset) -> list[WorkSize]:
    """Small, default and large jobs of a model: fewer frames, the default, a bigger frame/image."""
    width, height = (int(side) for side in preset.defaults.resolution.split("x"))
    steps = preset.defaults.num_inference_steps
    if preset.output is Output.IMAGE:
        return [WorkSize(preset.id, *_snap(preset, side, side), 1, steps) for side in (768, 1024, 1328)]
    frames = preset.defaults.video_length
    assert preset.frames is not None
    rule = preset.frames
    short = max(rule.min, rule.offset + (frames // 2 - rule.offset) // rule.step * rule.step)
    big_w, big_h = _snap(preset, int(width * 1.5), int(height * 1.5))
    return [
        WorkSize(preset.id, width, height, short, steps),
        WorkSize(preset.id, width, height, frames, steps),
        WorkSize(preset.id, big_w, big_h, frames, steps),
    ]


def _snap(preset: ModelPreset, width: int, height: int) -> tuple[int, int]:
    rule = preset.sizes
    sides = []
    for side in (width, height):
        side = min(max(side, rule.min_side), rule.max_side)
        sides.append(side // rule.multiple * rule.multiple)
    return sides[0], sides[1]


def _fastest_fit(preset: ModelPreset, size: JobSize, vram: int, ram: int) -> Profile | None:
    for profile in SPEED_ORDER:
        if estimate(preset, profile, size).fits(vram, ram):
            return profile
    return None


def arrival_times(
    rng: random.Random,
    rate: float,
    end: float,
    arrival: str,
    burst_s: float = BURST_MEAN_S,
    lull_s: float = LULL_MEAN_S,
) -> Iterator[float]:
    """Arrival instants in [0, end) at a mean of `rate` a second, Poisson or bursty (bursts and
    lulls of mean lengths `burst_s` and `lull_s`)."""
    if arrival == "poisson":
        t = rng.expovariate(rate)
        while t < end:
            yield t
            t += rng.expovariate(rate)
        return
    # Bursty: a two-state Markov-modulated Poisson process whose long-run mean rate is `rate`.
    high = rate * BURST_FACTOR
    low = (rate * (burst_s + lull_s) - high * burst_s) / lull_s
    low = max(low, rate * 0.05)
    t = 0.0
    for bursting in itertools.cycle((False, True)):
        phase_end = t + rng.expovariate(1 / (burst_s if bursting else lull_s))
        phase_rate = high if bursting else low
        while True:
            t += rng.expovariate(phase_rate)
            if t >= min(phase_end, end):
                break
            yield t
        t = phase_end
        if t >= end:
            return


def _zipf(n: int, s: float) -> list[float]:
    return [1 / (rank**s) for rank in range(1, n + 1)]


def cdf(weights: Sequence[float]) -> list[float]:
    """The cumulative shares of `weights`, for `pick`."""
    total = sum(weights)
    return list(itertools.accumulate(w / total for w in weights))


def pick(rng: random.Random, shares: list[float]) -> int:
    """An index drawn with the probabilities whose cumulative shares are `shares`."""
    return min(bisect.bisect_left(shares, rng.random()), len(shares) - 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scheduler.sim.generator", description=__doc__)
    parser.add_argument("--pool", type=Path, required=True)
    parser.add_argument("--hours", type=float, required=True)
    parser.add_argument("--load", type=float, default=0.85)
    parser.add_argument("--arrival", choices=("poisson", "bursty"), default="poisson")
    parser.add_argument(
        "--models", default=",".join(DEFAULT_MODELS), help="comma-separated, most popular first"
    )
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        pool = load_pool(args.pool)
        models = [get_model(m).id for m in args.models.split(",")]
        jobs = generate_trace(pool, models, args.hours, args.load, args.arrival, args.zipf, seed=args.seed)
    except (SimInputError, ValueError, LookupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    count = write_trace(jobs, args.out)
    print(f"{count} jobs over {args.hours} h written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
