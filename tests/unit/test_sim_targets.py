"""A target with nothing to measure is a miss: no ETA recorded, no owner to compare, no job run."""

from __future__ import annotations

import pytest

from scheduler.baselines.greedy import GreedyPolicy
from scheduler.sim.engine import simulate
from scheduler.sim.formats import PoolSpec
from scheduler.sim.metrics import jain_index, median
from scheduler.sim.report import as_json, as_table
from scheduler.sim.targets import at_least, at_most
from tests.benchmarks.bench_scheduler import ETA_TARGET, JAIN_TARGET, eta_target, jain_target
from tests.unit.test_sim_engine import job, node


def test_a_run_where_no_job_finishes_has_no_eta_error_nor_fairness_and_misses_both_targets() -> None:
    # The 14B at 720p fits no profile of an 8 GiB card on an 8 GiB node: nothing ever runs.
    pool = PoolSpec("p", (node("tiny", "RTX 3070", ram_gib=8),))
    result = simulate(pool, [job("a", 0.0, "wan2.1-t2v-14b", (1280, 720, 81))], GreedyPolicy())
    report = result.report
    assert report.completed == 0
    assert report.eta_error is None
    assert report.jain_fairness is None
    eta, jain = at_most(report.eta_error, ETA_TARGET), at_least(report.jain_fairness, JAIN_TARGET)
    assert not eta.ok and not jain.ok
    assert "no data" in eta.note and "no data" in jain.note
    assert as_json([result])["policies"]["greedy"]["eta_error"] is None
    row = as_table([result]).splitlines()[1].split()
    assert row[-2:] == ["-", "-"]  # ETA error and Jain: shown as missing, not as 0.00 and 1.00


def test_one_owner_has_no_fairness_to_measure() -> None:
    pool = PoolSpec("p", (node("solo", "RTX 4090"),))
    report = simulate(
        pool, [job("a", 0.0, "flux.1-schnell", (1024, 1024, 1), steps=4)], GreedyPolicy()
    ).report
    assert report.completed == 1 and report.owner_share == {"ann": 1.0}
    assert report.jain_fairness is None
    assert report.eta_error is not None


@pytest.mark.parametrize("values", [[], [7.0], [0.0, 0.0, 0.0, 0.0]], ids=["none", "one", "all-zero"])
def test_jain_index_without_two_owners_with_time_is_no_data(values: list[float]) -> None:
    assert jain_index(values) is None


def test_the_median_of_nothing_is_no_data() -> None:
    assert median([]) is None
    assert median([0.3, 0.1, 0.2]) == pytest.approx(0.2)


def test_the_benchmark_s_eta_target_with_no_placement_measured_is_a_miss() -> None:
    assert not eta_target([]).ok
    assert eta_target([]).value is None
    assert eta_target([0.1, 0.3, 0.05]).ok
    assert not eta_target([0.5, 0.6]).ok


def test_the_benchmark_s_jain_target_misses_when_any_trace_has_no_data() -> None:
    assert jain_target([0.97, 0.96, 0.99]).ok
    assert not jain_target([]).ok
    assert not jain_target([None, None]).ok
    missing_one = jain_target([0.99, None, 0.98])
    assert not missing_one.ok and "no data" in missing_one.note
    assert not jain_target([0.9, 0.92]).ok


def test_a_target_met_exactly_passes_and_nan_is_a_miss() -> None:
    assert at_most(0.25, 0.25).ok and at_least(0.95, 0.95).ok
    assert not at_most(float("nan"), 0.25).ok
    assert not at_least(float("nan"), 0.95).ok
