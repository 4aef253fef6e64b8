"""`wanfarm submit --wait` (and `wanfarm demo`) follow each job with a bar that names its model."""

from __future__ import annotations

from contextlib import closing

import pytest

from controller.cli.client import FarmClient
from controller.cli.submit import wait_for
from controller.schemas import JobOut, ProgressOut
from tests.unit.loopback_http import Asked, Reply, scripted_server


def _job(job_id: str, model: str, state: str, phase: str = "", step: int = 0) -> JobOut:
    return JobOut(
        id=job_id,
        owner="local",
        state=state,
        model=model,
        priority=50,
        progress=ProgressOut(step=step, total=4, phase=phase),
        agent=None,
        profile=None,
        attempts=1,
        max_attempts=3,
        eta=None,
        wait_reason=None,
        outputs=[],
        error=None,
        attempt_errors=[],
        created_at=0.0,
        started_at=None,
        finished_at=None,
        settings={},
    )


def test_each_jobs_bar_names_the_job_and_its_model(capsys: pytest.CaptureFixture[str]) -> None:
    # Each job is denoising at the first poll and has succeeded at the second.
    polls = {"j-1": 0, "j-2": 0}
    models = {"j-1": "wan-tiny", "j-2": "qwen-image-tiny"}

    def answer(asked: Asked) -> Reply:
        job_id = asked.target.rsplit("/", 1)[1]
        polls[job_id] += 1
        running = polls[job_id] == 1
        job = _job(job_id, models[job_id], "running" if running else "succeeded", "denoising", 2)
        return Reply(200, job.model_dump_json().encode())

    queued = [_job(job_id, model, "queued") for job_id, model in models.items()]
    with scripted_server(answer) as url, closing(FarmClient(url)) as client:
        finished = wait_for(client, queued, poll_s=0)
    assert [job.state for job in finished] == ["succeeded", "succeeded"]
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("j-1  wan-tiny         denoising  [")
    assert lines[1].startswith("j-2  qwen-image-tiny  denoising  [")
    assert any(line.startswith("j-1  wan-tiny         done") for line in lines)
