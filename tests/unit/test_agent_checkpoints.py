"""An agent saves a running job's denoising state in object storage; a preempted (or killed) attempt's
job resumes from it on another agent with the same frames as a run never stopped, and the checkpoint
is gone once the job succeeds. The policy of when to save, and a checkpoint that cannot be read."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from gpu_agent.agent import GpuAgent
from gpu_agent.checkpoints import CheckpointCost, CheckpointPolicy, StoredCheckpoints, checkpoint_key
from gpu_agent.messages import AgentEvent, EventKind
from gpu_agent.storage import LocalStore, checkpoints_prefix, output_key
from models.progress import Phase
from processing.video import read_mp4
from tests.job_records import placed_task
from tests.unit.tiny_agent import agent

# UniPC keeps the model outputs of earlier steps: a resume must bring them back too.
SETTINGS = {"model_type": "wan-tiny", "prompt": "a fox", "seed": 3, "num_inference_steps": 8}


def wait_end(worker: GpuAgent, job_id: str, preempt_at: int | None = None) -> AgentEvent:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        events = [e for e in worker.events() if e.job_id == job_id]
        if preempt_at is not None and any(
            e.step >= preempt_at and e.phase == Phase.DENOISING for e in events
        ):
            worker.preempt(job_id, events[-1].attempt)
            preempt_at = None
        if events and events[-1].kind.final and worker.inventory().current_job is None:
            return events[-1]
        time.sleep(0.005)
    raise AssertionError("the job did not end in 300 s")


def frames_of(tmp_path: Path, job_id: str) -> np.ndarray:
    [stored] = list((tmp_path / "objects" / output_key(job_id, "")).iterdir())
    return read_mp4(stored).frames


def test_a_preempted_job_resumes_on_another_agent_with_the_frames_of_an_unbroken_run(
    tmp_path: Path, cache_dir: Path, temp_dir: Path
) -> None:
    first = agent(tmp_path, cache_dir, "n1-gpu0", checkpoint_steps=1)
    second = agent(tmp_path, cache_dir, "n2-gpu0", checkpoint_steps=1)
    try:
        assert first.start(placed_task("job-1", SETTINGS))
        stopped = wait_end(first, "job-1", preempt_at=3)
        assert stopped.kind is EventKind.PREEMPTED, stopped.error
        assert 3 <= stopped.step < 8 and stopped.total == 8
        assert stopped.checkpoint_saves == stopped.step and stopped.checkpoint_bytes > 0
        store = LocalStore(tmp_path / "objects")
        assert store.exists(checkpoint_key("job-1", "gen0"))

        assert second.start(placed_task("job-1", SETTINGS, attempt=2))
        done = wait_end(second, "job-1")
        assert done.kind is EventKind.SUCCEEDED, done.error
        assert done.resumed_from == stopped.step
        assert not store.list(checkpoints_prefix("job-1"))  # gone with the job's success

        assert second.start(placed_task("job-2", SETTINGS))  # the same work, never stopped
        whole = wait_end(second, "job-2")
        assert whole.kind is EventKind.SUCCEEDED and whole.resumed_from == 0
        assert np.array_equal(frames_of(tmp_path, "job-1"), frames_of(tmp_path, "job-2"))
    finally:
        first.workspace.release()
        second.workspace.release()


def test_a_policy_by_steps_saves_every_n_and_one_by_time_keeps_its_cost_under_its_share() -> None:
    by_steps = CheckpointPolicy(every_steps=3)
    assert [by_steps.due(n, 0.0, 0.0) for n in (1, 2, 3)] == [False, False, True]
    by_time = CheckpointPolicy(every_seconds=60.0, max_share=0.02)
    assert not by_time.due(10, 59.0, 0.1) and by_time.due(1, 60.0, 0.1)
    # Writing took 2 s: the next waits 100 s of denoising, so writing stays within 2% of it.
    assert not by_time.due(50, 99.0, 2.0) and by_time.due(50, 100.0, 2.0)


def test_an_unreadable_checkpoint_is_never_resumed_from(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    stored = StoredCheckpoints(store, "job-1", "gen0", "work", CheckpointPolicy(), CheckpointCost())
    assert stored.resume() is None  # none yet
    half = tmp_path / "half.ckpt"
    half.write_bytes(b"PK\x03\x04 half a zip")
    store.put_file(checkpoint_key("job-1", "gen0"), half, "application/octet-stream")
    assert stored.resume() is None


@pytest.mark.parametrize("preempted", [True, False])
def test_a_preemption_asks_for_a_checkpoint_at_the_next_boundary(tmp_path: Path, preempted: bool) -> None:
    store = LocalStore(tmp_path / "objects")
    stored = StoredCheckpoints(
        store, "job-1", "gen0", "work", CheckpointPolicy(every_steps=100), CheckpointCost(), lambda: preempted
    )
    assert stored.due(1, 10) is preempted
