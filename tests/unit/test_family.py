"""The scenario family: deterministic, every trait it claims really there, every job runnable."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import pytest

from controller.cli.simulate import simulate_command
from models.catalogue import Output, get_model
from models.gpus import GIB, find_gpu
from scheduler.feasibility import choose_profile
from scheduler.sim.cluster import build_cluster
from scheduler.sim.family import FAMILY_SIZE, TRAITS, Scenario, confined_seconds, family, main, scenario
from scheduler.sim.family_pools import DATACENTER_TIERS
from scheduler.sim.formats import PoolSpec, TraceJob, load_pool
from scheduler.sim.generator import job_nodes, job_work, pool_capacity
from scheduler.sim.traces import load_trace
from scheduler.sim.truth import TruthConfig

DATACENTER_CARDS = {name for tier in DATACENTER_TIERS.values() for name in tier}


@cache
def members() -> tuple[Scenario, ...]:
    return tuple(family())


def having(trait: str) -> list[Scenario]:
    found = [member for member in members() if trait in member.traits]
    assert found, f"no scenario of the family has {trait!r}"
    return found


def test_the_same_seed_gives_the_same_scenario_and_another_seed_another() -> None:
    first = scenario(1003)
    assert scenario(1003) == first
    assert scenario(1004) != first
    assert first.name == "family-1003" and first.seed == 1003


def test_the_family_covers_every_trait() -> None:
    assert len(members()) == FAMILY_SIZE
    seen = set().union(*(member.traits for member in members()))
    assert seen == set(TRAITS)


def test_sizes_and_loads_stay_in_their_ranges_and_the_load_is_what_the_jobs_offer() -> None:
    for member in members():
        assert 4 <= member.pool.gpu_count <= 120, member.name
        assert 100 <= len(member.jobs) <= 1500, member.name
        assert 0.6 <= member.load <= 0.95, member.name
        whole = _work(member, member.jobs) / (pool_capacity(member.pool) * member.span_s)
        confined = confined_seconds(member.pool, _works(member)) / member.span_s
        assert max(whole, confined) == pytest.approx(member.load, rel=0.01), member.name
        times = [job.t for job in member.jobs]
        assert times == sorted(times) and len({job.job_id for job in member.jobs}) == len(member.jobs)


def test_no_part_of_a_pool_is_offered_more_than_the_load_by_the_jobs_only_it_can_run() -> None:
    # family-1003 was drawn at 0.83 of its pool while 175 of its jobs fit only its seven 3080 Ti
    # nodes (the 5090 nodes have 16 GB of RAM), which they loaded to 1.6.
    for member in members():
        nodes = {node.name: node for node in member.pool.nodes}
        for kinds, flops in _works(member):
            part = PoolSpec("part", tuple(nodes[name] for name in sorted(kinds)))
            assert flops / (pool_capacity(part) * member.span_s) <= member.load * 1.01, (member.name, kinds)
    troubled = scenario(1003)
    small = {node.name for node in troubled.pool.nodes if node.ram_bytes >= 32 * GIB}
    confined = [job for job in troubled.jobs if job_nodes(troubled.pool, job.work) <= small]
    assert len(confined) > 100 and confined_seconds(troubled.pool, _works(troubled)) > 0


def test_every_job_runs_on_some_card_of_its_pool() -> None:
    for member in members():
        agents = build_cluster(member.pool, TruthConfig(noise=False), 0)[1]
        views = list({(a.spec.name, a.node.ram_bytes): a.view for a in agents}.values())
        for work in {job.work for job in member.jobs}:
            preset = get_model(work.model_id)
            assert any(choose_profile(preset, work, view) for view in views), (member.name, work)


def test_pool_mixes_hold_the_cards_they_name() -> None:
    for trait, datacenter in (("consumer", {False}), ("datacenter", {True}), ("mixed", {False, True})):
        for member in having(trait):
            kinds = {gpu in DATACENTER_CARDS for node in member.pool.nodes for gpu in node.gpus}
            assert kinds == datacenter, member.name


def test_hardware_traits_are_in_the_pool() -> None:
    for member in having("old-cards"):
        assert any(not find_gpu(g).caps.bf16 for node in member.pool.nodes for g in node.gpus), member.name
    for member in having("low-ram"):
        assert min(node.ram_bytes for node in member.pool.nodes) <= 16 * GIB, member.name
    for member in having("slow-links"):
        assert min(node.net_bytes_per_s for node in member.pool.nodes) <= 0.2e9 / 8, member.name
    for member in having("slow-disks"):
        assert min(node.disk_bytes_per_s for node in member.pool.nodes) <= 0.25e9, member.name
    for member in having("warm-cache"):
        used = {job.work.model_id for job in member.jobs}
        assert any(node.cached & used for node in member.pool.nodes), member.name
    for member in having("cold-cache"):
        assert all(not node.cached for node in member.pool.nodes), member.name


def test_consumer_pools_put_small_cards_beside_big_ones() -> None:
    for member in having("consumer"):
        vram = {find_gpu(g).vram_gb for node in member.pool.nodes for g in node.gpus}
        assert min(vram) <= 12 and max(vram) >= 24, member.name


def test_a_batch_dump_is_hundreds_of_jobs_of_one_model_by_one_owner_at_one_instant() -> None:
    for member in having("batch-dump"):
        groups = Counter((job.t, job.work.model_id, job.owner) for job in member.jobs)
        assert max(groups.values()) >= 100, member.name
    for member in members():
        if "batch-dump" not in member.traits:
            assert max(Counter(job.t for job in member.jobs).values()) < 100, member.name


def test_diurnal_arrivals_peak_at_midday_and_bursty_ones_come_in_bursts() -> None:
    for member in having("diurnal"):
        times = _background(member)
        middle = sum(member.span_s / 4 <= t < 3 * member.span_s / 4 for t in times)
        assert middle > 1.4 * (len(times) - middle), member.name
    for member in having("bursty"):
        times = _background(member)
        counts = Counter(int(t / (member.span_s / 24)) for t in times)
        per_bin = [counts.get(i, 0) for i in range(24)]
        mean = sum(per_bin) / 24
        variance = sum((c - mean) ** 2 for c in per_bin) / 24
        assert variance > 1.5 * mean, member.name  # a Poisson process's variance equals its mean


def test_priority_classes_have_a_top_class_beside_lower_ones() -> None:
    for member in having("priority-classes"):
        priorities = {job.priority for job in member.jobs}
        assert max(priorities) >= 75 and min(priorities) < 75, member.name
    for member in members():
        if "priority-classes" not in member.traits:
            assert {job.priority for job in member.jobs} == {50}, member.name


def test_equal_owners_offer_equal_work_and_more_than_the_pool_renders_in_their_window() -> None:
    for member in having("equal-owners-overload"):
        assert member.overload is not None
        start, end = member.overload
        counts = Counter(job.owner for job in member.jobs)
        assert len(counts) >= 3 and max(counts.values()) - min(counts.values()) <= 1, member.name
        assert {job.priority for job in member.jobs} == {50}, member.name
        inside = _work(member, [job for job in member.jobs if start <= job.t < end])
        assert inside / (pool_capacity(member.pool) * (end - start)) > 1.0, member.name
    assert all(m.overload is None for m in members() if "equal-owners-overload" not in m.traits)


def test_long_videos_run_beside_images() -> None:
    for member in having("long-videos"):
        outputs = {get_model(job.work.model_id).output for job in member.jobs}
        long = [
            job
            for job in member.jobs
            if job.work.frames >= 1.5 * get_model(job.work.model_id).defaults.video_length
            and get_model(job.work.model_id).output is Output.VIDEO
        ]
        assert long and Output.IMAGE in outputs, member.name


def test_the_module_writes_files_that_wanfarm_simulate_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    smallest = min(members(), key=lambda member: len(member.jobs) * member.pool.gpu_count)
    assert main(["--seed", str(smallest.seed), "--out", str(tmp_path)]) == 0
    pool, trace = tmp_path / "pool.json", tmp_path / "trace.jsonl"
    assert load_pool(pool).nodes == smallest.pool.nodes
    assert tuple(load_trace(trace)) == smallest.jobs
    capsys.readouterr()
    assert simulate_command(pool, trace, ["fifo"], 0, True, None) == 0
    assert json.loads(capsys.readouterr().out)["policies"]["fifo"]["completed"] == len(smallest.jobs)


def _work(member: Scenario, jobs: Sequence[TraceJob]) -> float:
    # The offered work of `jobs` as the generator measures it (render FLOPs on the cards that fit).
    works = {work: job_work(member.pool, work) or 0.0 for work in {job.work for job in jobs}}
    return sum(works[job.work] for job in jobs)


def _works(member: Scenario) -> list[tuple[frozenset[str], float]]:
    # The offered work of the scenario by the set of node kinds that can run it.
    works = {work: job_work(member.pool, work) or 0.0 for work in {job.work for job in member.jobs}}
    kinds = {work: job_nodes(member.pool, work) for work in works}
    by_kinds: dict[frozenset[str], float] = {}
    for job in member.jobs:
        by_kinds[kinds[job.work]] = by_kinds.get(kinds[job.work], 0.0) + works[job.work]
    return list(by_kinds.items())


def _background(member: Scenario) -> list[float]:
    # Arrival times, a batch dump's instant left out (it is one event, not a rate).
    counts = Counter(job.t for job in member.jobs)
    return [job.t for job in member.jobs if counts[job.t] < 100]
