"""The simulator drives a policy as the controller would and judges it by its own ground truth."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.catalogue import get_model
from models.gpus import GIB
from models.profiles import Profile
from models.work import WorkSize
from scheduler.baselines.greedy import GreedyPolicy
from scheduler.sim.engine import simulate
from scheduler.sim.formats import NodeSpec, PoolSpec, TraceJob, load_pool
from scheduler.sim.report import as_json
from scheduler.sim.traces import load_trace
from scheduler.sim.truth import TruthConfig, render_seconds
from scheduler.snapshot import Assignment, Decisions, Observation, Prefetch, Snapshot, Waiting

REFERENCE = Path(__file__).resolve().parents[2] / "scheduler" / "sim" / "reference"
NO_NOISE = TruthConfig(noise=False)


def node(
    name: str, *gpus: str, ram_gib: int = 128, cached: tuple[str, ...] = (), net: float = 1e9
) -> NodeSpec:
    return NodeSpec(name, 1, gpus, ram_gib * GIB, 1000 * GIB, 2e9, net, frozenset(cached))


def job(job_id: str, t: float, model: str, size: tuple[int, int, int], steps: int = 30) -> TraceJob:
    return TraceJob(job_id, t, WorkSize(model, *size, steps), 50, "ann")


class Recording:
    """Wraps a policy and keeps every observation it is sent."""

    def __init__(self, inner: GreedyPolicy) -> None:
        self.inner = inner
        self.name = inner.name
        self.seen: list[Observation] = []

    def place(self, snapshot: Snapshot) -> Decisions:
        return self.inner.place(snapshot)

    def observe(self, observation: Observation) -> None:
        self.seen.append(observation)


class FaceValueP1:
    """Test-only and naive: every job to the first idle agent it has not failed on, at profile 1."""

    name = "naive"

    def __init__(self) -> None:
        self.seen: list[Observation] = []

    def place(self, snapshot: Snapshot) -> Decisions:
        idle = sorted((a for a in snapshot.agents if a.idle), key=lambda a: a.agent_id)
        assignments = []
        for pending in snapshot.pending:
            agent = next((a for a in idle if a.agent_id not in pending.avoid_agents), None)
            if agent is not None:
                idle.remove(agent)
                assignments.append(Assignment(pending.job_id, agent.agent_id, Profile.P1, 0, 0, "first"))
        return Decisions(assignments=tuple(assignments))

    def observe(self, observation: Observation) -> None:
        self.seen.append(observation)


def home_lab_json(seed: int) -> dict[str, object]:
    pool = load_pool(REFERENCE / "home-lab.pool.json")
    return as_json(
        [simulate(pool, load_trace(REFERENCE / "home-lab.trace.jsonl"), GreedyPolicy(), seed=seed)]
    )


def test_the_same_seed_gives_the_same_report_and_another_seed_a_different_one() -> None:
    first = home_lab_json(3)
    assert home_lab_json(3) == first
    assert home_lab_json(4) != first


def test_a_policy_ignoring_memory_runs_out_of_memory_and_the_job_is_retried_elsewhere() -> None:
    # Flux at profile 1 needs ~23 GiB of VRAM: the 3060's 12 GiB fail, the 5090's 32 GiB do not.
    pool = PoolSpec("p", (node("a-small", "RTX 3060"), node("b-big", "RTX 5090")))
    policy = FaceValueP1()
    result = simulate(pool, [job("j", 0, "flux.1-dev", (1024, 1024, 1))], policy, seed=1)
    report = result.report
    assert (report.oom_failures, report.completed, report.failed) == (1, 1, 0)
    failed, done = policy.seen
    assert failed.out_of_memory and failed.gpu_name == "RTX 3060"
    assert failed.peak_vram_bytes is not None and failed.peak_vram_bytes > 12 * GIB
    assert not done.out_of_memory and done.gpu_name == "RTX 5090"


def test_greedy_never_puts_a_big_card_only_job_on_the_small_card() -> None:
    # 14B at 1280x720x81 needs ~10 GiB of VRAM at any profile: the 8 GiB 3070 can never hold it.
    pool = PoolSpec("p", (node("small", "RTX 3070"), node("big", "RTX 3090")))
    trace = [job(f"big{i}", i, "wan2.1-t2v-14b", (1280, 720, 81), steps=4) for i in range(4)]
    trace += [job(f"img{i}", 10 + i, "flux.1-schnell", (1024, 1024, 1), steps=4) for i in range(4)]
    policy = Recording(GreedyPolicy())
    report = simulate(pool, trace, policy, seed=0).report
    big_cards = {o.gpu_name for o in policy.seen if o.job_id.startswith("big")}  # failed attempts too
    assert big_cards == {"RTX 3090"}
    images = {o.job_id: o.gpu_name for o in policy.seen if o.job_id.startswith("img")}
    assert len(images) == 4 and "RTX 3070" in images.values()
    # Greedy sizes the 14B by the estimate at face value: profile 3, 21.9 GiB of the 3090's 24. The
    # truth, independent of the estimator since issue 13, needs 24.8-25.7 GiB there at seed 0 (the
    # 14B's drawn bias is +27%), so each big job runs out of memory on the 3090 once and, no other
    # card being able to hold it, is left unfinished. (Under the old truth, the estimate x
    # lognormal(0.04), all eight finished.)
    assert (report.completed, report.oom_failures, report.unfinished) == (4, 4, 4)


def test_one_agent_two_jobs_match_the_truth_model_exactly() -> None:
    # Noise off: card efficiency is the mean (0.4), no slow node, no per-job draws.
    model, size = "wan2.1-t2v-1.3b", (832, 480, 81)
    pool = PoolSpec("p", (node("solo", "RTX 4090", net=1e9),))
    trace = [job("a", 0.0, model, size), job("b", 0.0, model, size)]
    result = simulate(pool, trace, GreedyPolicy(), seed=0, truth=NO_NOISE)
    weights = get_model(model).weight_bytes
    render = render_seconds(trace[0].work, Profile.P1, 165.2e12 * 0.4)
    first = weights / 1e9 + render  # downloaded at 1 GB/s, then rendered
    second = first + render  # waits for the agent, then finds the model hot
    report = result.report
    assert report.completed == 2
    assert report.mean_latency_s == pytest.approx((first + second) / 2)
    assert report.p50_latency_s == pytest.approx((first + second) / 2)
    assert report.makespan_s == pytest.approx(second)
    assert report.gpu_busy_share == pytest.approx(1.0)
    assert (report.cold_loads, report.downloads, report.bytes_downloaded) == (1, 1, weights)
    assert report.owner_gpu_seconds == {"ann": pytest.approx(second)}
    assert report.jain_fairness is None  # one owner: no fairness to measure


class PrefetchThenRun:
    """Test-only: prefetch the job's model first, and run the job only once the node caches it."""

    name = "prefetcher"

    def place(self, snapshot: Snapshot) -> Decisions:
        [agent] = snapshot.agents
        assignments, prefetches = [], []
        for pending in snapshot.pending:
            if pending.work.model_id in agent.cached_models and agent.idle:
                assignments.append(Assignment(pending.job_id, agent.agent_id, Profile.P1, 0, 0, "cached"))
            else:
                prefetches.append(Prefetch(agent.agent_id, pending.work.model_id))
        return Decisions(assignments=tuple(assignments), prefetches=tuple(prefetches))

    def observe(self, observation: Observation) -> None:
        pass


def test_a_prefetch_downloads_once_in_the_background_and_the_job_then_loads_from_disk() -> None:
    model, size = "flux.1-schnell", (1024, 1024, 1)
    pool = PoolSpec("p", (node("solo", "RTX 4090", net=1e9),))
    image = job("a", 0.0, model, size, steps=4)
    result = simulate(pool, [image], PrefetchThenRun(), seed=0, truth=NO_NOISE)
    weights = get_model(model).weight_bytes
    render = render_seconds(image.work, Profile.P1, 165.2e12 * 0.4)
    report = result.report
    assert (report.downloads, report.bytes_downloaded, report.completed) == (1, weights, 1)
    # Downloaded at 1 GB/s, then read from the node's disk at 2 GB/s.
    assert report.mean_latency_s == pytest.approx(weights / 1e9 + weights / 2e9 + render)


def test_a_job_no_agent_can_run_is_left_unfinished_and_the_run_ends() -> None:
    pool = PoolSpec("p", (node("tiny", "RTX 3070", ram_gib=8),))
    result = simulate(pool, [job("a", 0.0, "wan2.1-t2v-14b", (1280, 720, 81))], GreedyPolicy(), seed=0)
    assert (result.report.completed, result.report.unfinished) == (0, 1)


class Promising:
    """Test-only: the one agent's job finishes 100 s from now, a waiting job 50 s from now (ETAs
    that move on with the clock)."""

    name = "promising"

    def place(self, snapshot: Snapshot) -> Decisions:
        [agent] = snapshot.agents
        assignments: list[Assignment] = []
        waiting: list[Waiting] = []
        for pending in sorted(snapshot.pending, key=lambda p: p.job_id):
            now = snapshot.now
            if agent.idle and not assignments:
                assignments.append(
                    Assignment(pending.job_id, agent.agent_id, Profile.P1, now, now + 100, "idle")
                )
            else:
                waiting.append(Waiting(pending.job_id, "busy", now + 50))
        return Decisions(assignments=tuple(assignments), waiting=tuple(waiting))

    def observe(self, observation: Observation) -> None:
        pass


def test_the_eta_at_submit_is_the_first_one_given_and_only_jobs_of_a_model_seen_before_count() -> None:
    model, size = "wan2.1-t2v-1.3b", (832, 480, 81)
    pool = PoolSpec("p", (node("solo", "RTX 4090", net=1e9),))
    # "a" is the model's first job (not counted); "b" starts at once, "c" waits for it.
    trace = [job("a", 0.0, model, size), job("b", 10_000.0, model, size), job("c", 10_000.0, model, size)]
    report = simulate(pool, trace, Promising(), seed=0, truth=NO_NOISE).report
    render = render_seconds(trace[0].work, Profile.P1, 165.2e12 * 0.4)
    b_error = abs(100 - render) / render  # finishes at 10,000 + render (hot)
    c_error = abs(50 - 2 * render) / (2 * render)  # its first ETA, 10,000 + 50; it ends after b
    assert report.submit_eta_jobs == 2
    assert report.submit_eta_error == pytest.approx((b_error + c_error) / 2)
