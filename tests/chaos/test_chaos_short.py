"""A short chaos run inside `make test`: the driver of `make chaos` with a few jobs and faults, on
a real two-node Ray cluster, moto's S3 server and the controller as its own process."""

from __future__ import annotations

from pathlib import Path

from tests.chaos.driver import ChaosConfig, run
from tests.chaos.faults import FaultKind

SHORT = ChaosConfig(
    seed=17,
    jobs=5,
    nodes=2,
    # No agent kill: a restarted agent imports torch for 30-120 s on a loaded 2-core machine, too
    # long for make test (test_farm_recovery kills one; make chaos kills many).
    kinds=(FaultKind.KILL_CONTROLLER, FaultKind.S3_OUTAGE),
    fault_gap_s=(1.0, 2.0),
    outage_s=(2.0, 4.0),
    # The long job still renders when the second fault lands, even on a quiet machine (there 12
    # steps were over before the controller was back, and the S3 outage never came): 19 s in all.
    long_steps=400,
    time_limit_s=150.0,  # the jobs left unfinished then are reported as problems
    rounds=1,
)


def test_a_short_chaos_run_loses_no_job_and_leaves_nothing_behind(tmp_path: Path) -> None:
    report = run(SHORT, tmp_path)
    print(report.render())
    assert report.passed, report.render()
    assert {fault.kind for fault in report.faults} == set(SHORT.kinds)
