"""The latency floor: what no policy can beat on a pool and trace, from the simulator's own truth."""

from __future__ import annotations

import pytest

from models.catalogue import get_model
from models.profiles import Profile
from models.work import WorkSize
from scheduler.registry import get_policy
from scheduler.sim.bounds import latency_floor
from scheduler.sim.engine import simulate
from scheduler.sim.formats import PoolSpec, TraceJob, load_pool
from scheduler.sim.traces import load_trace
from scheduler.sim.truth import TruthConfig, render_seconds
from tests.unit.test_sim_engine import NO_NOISE, REFERENCE, node

FLUX = "flux.1-schnell"


def image(job_id: str, t: float) -> TraceJob:
    return TraceJob(job_id, t, WorkSize(FLUX, 1024, 1024, 1, 4), 50, "ann")


def test_a_job_s_floor_is_its_render_on_the_fastest_card() -> None:
    pool = PoolSpec("two", (node("slow", "RTX 3060"), node("fast", "RTX 4090")))
    floor = latency_floor(pool, [image("a", 0.0)], truth=NO_NOISE)
    on_4090 = render_seconds(image("a", 0.0).work, Profile.P1, 165.2e12 * NO_NOISE.mean_efficiency)
    assert floor.jobs == 1
    assert floor.mean_s == pytest.approx(on_4090)
    assert floor.p95_s == pytest.approx(on_4090)


@pytest.mark.parametrize("truth", [NO_NOISE, TruthConfig()], ids=["mean", "drawn"])
def test_one_job_alone_on_a_cached_card_takes_the_floor_plus_the_disk_read(truth: TruthConfig) -> None:
    # Alone on an H100 (every profile fits, so any policy picks the fastest) that holds the weights
    # on disk, the job's latency is the disk read plus exactly the floor, with the card's and the
    # job's draws of the same seed.
    pool = PoolSpec("one", (node("fast", "H100 SXM", cached=(FLUX,)),))
    jobs = [image("a", 0.0), image("b", 500.0)]
    for seed in (0, 7):
        floor = latency_floor(pool, jobs, seed=seed, truth=truth)
        report = simulate(pool, jobs, get_policy("wanfarm"), seed=seed, truth=truth).report
        read_s = get_model(FLUX).weight_bytes / 2e9
        # The first job reads the weights; the second finds them hot.
        assert report.mean_latency_s == pytest.approx(floor.mean_s + read_s / 2, rel=1e-6)


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
    # Ten equal jobs at once on one card: alone each takes r, but the card renders one at a time, so
    # the best order averages 5.5 r. The capacity bound knows the card has only so many seconds:
    # its best prices give r (N + 1)^2 / 4N = 3.025 r, well above r and still under any policy.
    pool = PoolSpec("one", (node("fast", "H100 SXM", cached=(FLUX,)),))
    jobs = [image(f"j{number}", 0.0) for number in range(10)]
    floor = latency_floor(pool, jobs, truth=NO_NOISE)
    alone = floor.alone_mean_s
    assert floor.p95_s == pytest.approx(alone)
    assert floor.mean_s == pytest.approx(3.025 * alone, rel=0.01)
    report = simulate(pool, jobs, get_policy("wanfarm"), truth=NO_NOISE).report
    assert floor.mean_s < report.mean_latency_s
