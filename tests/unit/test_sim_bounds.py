"""The latency floor: what no policy can beat on a pool and trace, from the simulator's own truth."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from models.catalogue import get_model
from models.gpus import find_gpu
from models.profiles import Profile
from models.work import WorkSize
from scheduler.registry import get_policy, policy_names
from scheduler.sim.bounds import latency_floor
from scheduler.sim.engine import simulate
from scheduler.sim.formats import PoolSpec, TraceJob, load_pool
from scheduler.sim.traces import load_trace
from scheduler.sim.truth import TruthConfig, render_seconds
from tests.unit.test_sim_engine import NO_NOISE, REFERENCE, node

FLUX = "flux.1-schnell"
CLIP = "wan2.1-t2v-1.3b"


def image(job_id: str, t: float) -> TraceJob:
    return TraceJob(job_id, t, WorkSize(FLUX, 1024, 1024, 1, 4), 50, "ann")


def clip(job_id: str, t: float) -> TraceJob:
    return TraceJob(job_id, t, WorkSize(CLIP, 832, 480, 33, 20), 50, "ann")


def test_a_job_s_floor_is_its_model_s_download_then_its_render_on_the_fastest_card() -> None:
    # No node holds the weights, so the first job waits for them to come over the 1 GB/s link
    # (a download cannot start before the trace does), then renders on the 4090.
    pool = PoolSpec("two", (node("slow", "RTX 3060"), node("fast", "RTX 4090")))
    floor = latency_floor(pool, [image("a", 0.0)], truth=NO_NOISE)
    on_4090 = render_seconds(image("a", 0.0).work, Profile.P1, 165.2e12 * NO_NOISE.mean_efficiency)
    download_s = get_model(FLUX).weight_bytes / 1e9
    assert floor.jobs == 1
    assert floor.mean_s == pytest.approx(download_s + on_4090)
    assert floor.p95_s == pytest.approx(download_s + on_4090)


@pytest.mark.parametrize("truth", [NO_NOISE, TruthConfig()], ids=["mean", "drawn"])
def test_two_jobs_on_a_cached_card_take_exactly_the_floor(truth: TruthConfig) -> None:
    # Alone on an H100 (every profile fits, so any policy picks the fastest) that holds the weights
    # on disk: the first job reads them (no card has them loaded before the first job of the model
    # starts), the second finds them hot. The floor counts the read, so it is met exactly, with the
    # card's and the jobs' draws of the same seed.
    pool = PoolSpec("one", (node("fast", "H100 SXM", cached=(FLUX,)),))
    jobs = [image("a", 0.0), image("b", 500.0)]
    for seed in (0, 7):
        floor = latency_floor(pool, jobs, seed=seed, truth=truth)
        report = simulate(pool, jobs, get_policy("wanfarm"), seed=seed, truth=truth).report
        assert report.mean_latency_s == pytest.approx(floor.mean_s, rel=1e-6)


@pytest.mark.parametrize("scenario", ["home-lab", "community"])
def test_no_policy_beats_the_floor_on_a_reference_scenario(scenario: str) -> None:
    pool = load_pool(REFERENCE / f"{scenario}.pool.json")
    trace = list(load_trace(REFERENCE / f"{scenario}.trace.jsonl"))
    for seed in (0, 3):
        floor = latency_floor(pool, trace, seed=seed)
        assert floor.jobs == len(trace)
        ours = simulate(pool, trace, get_policy("wanfarm"), seed=seed).report
        assert ours.completed == len(trace)
        assert floor.p95_s <= ours.p95_latency_s
        assert floor.mean_s <= ours.mean_latency_s


def test_a_job_no_card_can_run_has_no_floor() -> None:
    pool = PoolSpec("small", (node("small", "RTX 3060"),))
    huge = TraceJob("huge", 0.0, WorkSize("wan2.1-t2v-14b", 1920, 1080, 241, 30), 50, "ann")
    floor = latency_floor(pool, [image("a", 0.0), huge], truth=NO_NOISE)
    assert floor.jobs == 1


def test_jobs_that_arrive_together_on_one_card_wait_for_each_other_in_the_floor() -> None:
    # Ten equal clips at once on one card: alone each takes r after the weights are read, but the
    # card renders one at a time, so the best order averages read + 5.5 r. The capacity bound over
    # the card's hours gives r (N + 1)^2 / 4N = 3.025 r; counting whole jobs (at most floor(t / r)
    # of them are done t after the read) gives read + 5.5 r, less what the thresholds' grid loses.
    pool = PoolSpec("one", (node("fast", "H100 SXM", cached=(CLIP,)),))
    jobs = [clip(f"j{number}", 0.0) for number in range(10)]
    floor = latency_floor(pool, jobs, truth=NO_NOISE)
    read_s = get_model(CLIP).weight_bytes / 2e9
    render_s = floor.alone_mean_s - read_s
    assert floor.capacity_mean_s == pytest.approx(3.025 * render_s, rel=0.01)
    assert read_s + 5.3 * render_s < floor.mean_s <= read_s + 5.5 * render_s
    # The p95 is at least the ninth job's finish: read + 9 r.
    assert floor.p95_s == pytest.approx(read_s + 9 * render_s, rel=0.01)
    for name in policy_names():
        report = simulate(pool, jobs, get_policy(name), truth=NO_NOISE).report
        assert report.completed == len(jobs)
        assert floor.mean_s <= report.mean_latency_s
        assert floor.p95_s <= report.p95_latency_s


def test_bursts_with_idle_hours_between_them_are_counted_window_by_window() -> None:
    # Two bursts of eight clips, four hours apart, on one card. Over the whole trace the card has
    # hours to spare, so the old capacity bound sees no queue; each burst's window does.
    pool = PoolSpec("one", (node("fast", "H100 SXM", cached=(CLIP,)),))
    jobs = [clip(f"a{number}", 0.0) for number in range(8)]
    jobs += [clip(f"b{number}", 4 * 3600.0) for number in range(8)]
    floor = latency_floor(pool, jobs, truth=NO_NOISE)
    read_s = get_model(CLIP).weight_bytes / 2e9
    render_s = floor.alone_mean_s - read_s / 2  # the first burst waits for the weights to be read
    # The best schedule: the first burst averages read + 4.5 r, the second (weights hot) 4.5 r.
    best = read_s / 2 + 4.5 * render_s
    assert floor.capacity_mean_s < floor.alone_mean_s + render_s
    assert 0.95 * best < floor.window_mean_s <= best
    assert floor.mean_s == floor.window_mean_s
    report = simulate(pool, jobs, get_policy("wanfarm"), truth=NO_NOISE).report
    assert floor.mean_s <= report.mean_latency_s


@pytest.mark.parametrize("instance", range(6))
def test_no_registered_policy_beats_the_floor_on_small_random_instances(instance: int) -> None:
    # A few cards of mixed kinds, some cold, tens of jobs in bursts, some of high priority (so the
    # policies that preempt do), with the truth's noise on and off.
    rng = random.Random(instance)
    pool, jobs = random_instance(rng)
    truth = TruthConfig() if instance % 2 else NO_NOISE
    floor = latency_floor(pool, jobs, seed=instance, truth=truth)
    finished = 0
    for name in policy_names():
        report = simulate(pool, jobs, get_policy(name), seed=instance, truth=truth).report
        if report.completed < floor.jobs:
            continue  # the floor holds for a policy that finishes every job
        finished += 1
        assert floor.mean_s <= report.mean_latency_s * (1 + 1e-9), name
        assert floor.p95_s <= report.p95_latency_s * (1 + 1e-9), name
    assert finished >= 3


@pytest.mark.parametrize("instance", range(3))
def test_the_floor_is_under_the_best_schedule_of_two_cards_and_six_jobs(instance: int) -> None:
    # Every assignment and order of six jobs on two cached cards, each card's first job reading the
    # weights (one model, so the rest find them hot): the best average latency no schedule without
    # preemption beats. The floor holds for every policy, so it is under it too.
    rng = random.Random(100 + instance)
    pool = PoolSpec(
        "two", (node("big", "H100 SXM", cached=(CLIP,)), node("old", "A100 80GB", cached=(CLIP,)))
    )
    jobs = [
        TraceJob(
            f"j{number}",
            t,
            WorkSize(CLIP, 832, 480, rng.choice((17, 33, 49)), rng.choice((10, 20))),
            50,
            "ann",
        )
        for number, t in enumerate(sorted(rng.uniform(0, 120) for _ in range(6)))
    ]
    floor = latency_floor(pool, jobs, truth=NO_NOISE)
    best = brute_force_mean(pool, jobs)
    assert floor.mean_s <= best * (1 + 1e-9)
    assert floor.mean_s >= 0.7 * best  # and not far under it on so small a case


def brute_force_mean(pool: PoolSpec, jobs: list[TraceJob]) -> float:
    """The least mean latency over every assignment of the jobs to the pool's cards (one per node)
    and every order on a card, each job started as early as its card and its arrival allow."""
    cards = []
    for spec in pool.nodes:
        speed = find_gpu(spec.gpus[0]).half_tflops * 1e12 * NO_NOISE.mean_efficiency
        read_s = get_model(CLIP).weight_bytes / spec.disk_bytes_per_s
        cards.append((speed, read_s))
    renders = [
        [min(render_seconds(job.work, profile, speed) for profile in Profile) for speed, _ in cards]
        for job in jobs
    ]
    best = math.inf
    for order in itertools.permutations(range(len(jobs))):
        for choice in itertools.product(range(len(cards)), repeat=len(jobs)):
            free = [0.0] * len(cards)
            started = [False] * len(cards)
            total = 0.0
            for number in order:
                card = choice[number]
                start = max(free[card], jobs[number].t)
                load = 0.0 if started[card] else cards[card][1]
                started[card] = True
                free[card] = start + load + renders[number][card]
                total += free[card] - jobs[number].t
            best = min(best, total)
    return best / len(jobs)


def random_instance(rng: random.Random) -> tuple[PoolSpec, list[TraceJob]]:
    cards = ("RTX 3060", "RTX 4090", "RTX 3090", "H100 SXM")
    models = (FLUX, CLIP)
    nodes = tuple(
        node(
            f"n{number}",
            rng.choice(cards),
            cached=tuple(m for m in models if rng.random() < 0.5),
            net=rng.choice((1e8, 1e9)),
        )
        for number in range(rng.randint(2, 3))
    )
    jobs: list[TraceJob] = []
    t = 0.0
    while len(jobs) < rng.randint(15, 30):
        t += rng.expovariate(1 / 60.0) if rng.random() < 0.7 else 0.0  # some arrive together
        model = rng.choice(models)
        work = (
            WorkSize(FLUX, 1024, 1024, 1, 4)
            if model == FLUX
            else WorkSize(CLIP, 832, 480, rng.choice((17, 49)), 20)
        )
        jobs.append(TraceJob(f"j{len(jobs)}", t, work, rng.choice((10, 50, 90)), rng.choice(("ann", "bob"))))
    return PoolSpec("random", nodes), jobs
