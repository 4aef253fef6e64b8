"""`wanfarm status JOB`: a job stopped for a higher priority (the steps it keeps, the stop not
charged), and a waiting job's ETA beside the one it was given at submit."""

from __future__ import annotations

import time
from contextlib import closing

import pytest

from controller.cli.client import FarmClient
from controller.cli.jobs import status_command
from controller.schemas import JobOut, ProgressOut
from tests.unit.loopback_http import Asked, Reply, scripted_server

STOPPED = "attempt 1 on node-a-gpu0: preempted at step 11/300; not charged"


def test_status_of_a_preempted_job_shows_its_kept_steps_and_the_uncharged_stop(
    capsys: pytest.CaptureFixture[str],
) -> None:
    job = JobOut(
        id="j-1",
        owner="local",
        state="queued",
        model="wan-tiny",
        priority=10,
        progress=ProgressOut(step=11, total=300, phase="preempted"),
        agent="node-a-gpu0",
        profile="1",
        attempts=1,
        max_attempts=3,
        preemptions=1,
        eta=None,
        wait_reason="waiting for RTX 4090 node-a-gpu0",
        outputs=[],
        error=None,
        attempt_errors=[STOPPED],
        created_at=0.0,
        started_at=None,
        finished_at=None,
        settings={},
    )

    def answer(asked: Asked) -> Reply:
        assert asked.target.endswith("/v1/jobs/j-1")
        return Reply(200, job.model_dump_json().encode())

    with scripted_server(answer) as url, closing(FarmClient(url)) as client:
        assert status_command(client, "j-1", None, 50) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  progress: preempted 11/300" in lines
    assert "  attempts: 1 of at most 3 (1 stopped for a higher priority, not charged)" in lines
    assert f"  attempt failed: {STOPPED}" in lines


def test_status_shows_the_eta_and_the_one_given_at_submit(capsys: pytest.CaptureFixture[str]) -> None:
    eta, at_submit = 1_700_000_600.0, 1_700_000_300.0
    job = JobOut(
        id="j-2",
        owner="local",
        state="queued",
        model="wan-tiny",
        priority=50,
        progress=ProgressOut(step=0, total=0, phase=""),
        agent=None,
        profile=None,
        attempts=0,
        max_attempts=3,
        eta=eta,
        submit_eta=at_submit,
        wait_reason="queued behind 3 jobs",
        outputs=[],
        error=None,
        attempt_errors=[],
        created_at=0.0,
        started_at=None,
        finished_at=None,
        settings={},
    )

    def answer(asked: Asked) -> Reply:
        return Reply(200, job.model_dump_json().encode())

    with scripted_server(answer) as url, closing(FarmClient(url)) as client:
        assert status_command(client, "j-2", None, 50) == 0
    shown = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ETA: ")]
    local = [time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) for at in (eta, at_submit)]
    assert shown == [f"  ETA: {local[0]} (at submit: {local[1]})"]
