"""bench_family's verdicts: one bad scenario misses a per-scenario target, geometric means are over
all, and a target with nothing to measure is a miss, never a pass."""

from __future__ import annotations

from dataclasses import replace

from scheduler.sim.metrics import PolicyReport
from tests.benchmarks.bench_family import Row, family_targets
from tests.benchmarks.bench_scheduler import best_of, bytes_bar

GOOD = Row(
    scenario="family-1",
    policy="wanfarm",
    traits=("consumer",),
    gpus=8,
    jobs=200,
    mean_ratio=0.6,
    p95_ratio=0.7,
    bytes_ratio=0.5,
    floor_mean_ratio=0.3,
    floor_p95_ratio=0.3,
    oom_failures=0,
    unfinished=0,
    high_p95_ratio=0.4,
    jain=0.97,
    eta_submit_error=0.1,
    bar="fifo",
    best={},
    cpu_s=1.0,
)


def test_a_family_that_meets_every_target_passes() -> None:
    targets = family_targets([GOOD, replace(GOOD, scenario="family-2", mean_ratio=0.5)])
    assert {name: target.ok for name, target in targets.items() if not target.ok} == {}
    assert targets["geomean_mean_ratio"].value == round((0.6 * 0.5) ** 0.5, 4)


def test_one_scenario_worse_than_the_best_baseline_misses_although_the_mean_is_fine() -> None:
    low = replace(GOOD, p95_ratio=0.6)
    rows = [low, replace(low, scenario="family-2", p95_ratio=1.02), replace(low, scenario="family-3")]
    targets = family_targets(rows)
    assert not targets["worst_p95_ratio"].ok and targets["worst_p95_ratio"].value == 1.02
    assert "family-2" in targets["worst_p95_ratio"].note
    assert targets["geomean_p95_ratio"].ok


def test_an_oom_or_an_unfinished_job_anywhere_misses() -> None:
    assert not family_targets([GOOD, replace(GOOD, oom_failures=1)])["oom_failures"].ok
    assert not family_targets([GOOD, replace(GOOD, unfinished=2)])["unfinished_jobs"].ok


def test_priority_and_jain_are_judged_where_they_exist_and_missed_with_nothing_to_judge() -> None:
    plain = replace(GOOD, high_p95_ratio=None, jain=None)
    targets = family_targets([plain, replace(GOOD, scenario="family-2", high_p95_ratio=0.6, jain=0.9)])
    assert not targets["worst_high_class_p95_ratio"].ok
    assert not targets["lowest_overload_jain"].ok and targets["lowest_overload_jain"].value == 0.9
    empty = family_targets([plain])
    assert empty["worst_high_class_p95_ratio"].value is None and not empty["worst_high_class_p95_ratio"].ok
    assert empty["lowest_overload_jain"].value is None and not empty["lowest_overload_jain"].ok


def test_bytes_where_no_baseline_downloaded_are_named_not_averaged() -> None:
    rows = [GOOD, replace(GOOD, scenario="family-2", bytes_ratio=float("inf"))]
    target = family_targets(rows)["geomean_bytes_ratio"]
    assert target.value == GOOD.bytes_ratio and target.ok and "family-2" in target.note


def test_bytes_are_measured_against_the_baselines_that_serve_the_jobs_about_as_fast() -> None:
    # horde-like: the fewest bytes, by making jobs wait ten times longer; it sets no bytes bar.
    def report(name: str, mean_s: float, gigabytes: int) -> PolicyReport:
        return PolicyReport(
            policy=name, jobs=10, completed=10, failed=0, unfinished=0, mean_latency_s=mean_s,
            p50_latency_s=mean_s, p95_latency_s=mean_s, p99_latency_s=mean_s, makespan_s=1e4,
            gpu_busy_share=0.5, cold_loads=1, downloads=1, bytes_downloaded=gigabytes * 10**9,
            oom_failures=0, eta_error=None, submit_eta_error=None, submit_eta_jobs=0,
            owner_gpu_seconds={}, owner_share={}, jain_fairness=None, invalid_decisions=0, place_calls=1,
        )  # fmt: skip

    bar = {
        "fast": report("fast", 100.0, 50),
        "close": report("close", 190.0, 30),
        "slow": report("slow", 1e3, 1),
    }
    assert sorted(bytes_bar(bar)) == ["close", "fast"]
    assert best_of(bytes_bar(bar), "bytes_downloaded") == ("close", 30e9)
