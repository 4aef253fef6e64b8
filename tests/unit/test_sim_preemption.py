"""The simulator models preemption's cost: the stopped job ends at its next step plus a checkpoint
write, keeps its steps, and pays a load and a checkpoint read where it resumes."""

from __future__ import annotations

import pytest

from models.gpus import GIB
from models.profiles import Profile
from models.work import WorkSize
from scheduler.registry import get_policy
from scheduler.sim.engine import simulate
from scheduler.sim.formats import NodeSpec, PoolSpec, TraceJob
from scheduler.sim.metrics import SimResult
from scheduler.sim.truth import OVERHEAD_S, TruthConfig
from scheduler.snapshot import Assignment, Decisions, Observation, Preemption, Snapshot

NO_NOISE = TruthConfig(noise=False)
POOL = PoolSpec(
    "one-4090",
    (NodeSpec("box", 1, ("RTX 4090",), 128 * GIB, 1000 * GIB, 2e9, 1e9, frozenset({"wan2.1-t2v-14b"})),),
)
LOW = TraceJob("low", 0.0, WorkSize("wan2.1-t2v-14b", 1280, 720, 81, 30), 10, "ann")
HIGH = TraceJob("high", 300.0, WorkSize("wan2.1-t2v-14b", 832, 480, 33, 30), 90, "bob")


def run(policy: str) -> SimResult:
    return simulate(POOL, [LOW, HIGH], get_policy(policy), truth=NO_NOISE)


def test_a_high_job_stops_a_long_low_one_and_both_finish() -> None:
    steady, preempting = run("wanfarm-no-preempt").report, run("wanfarm").report
    assert steady.extra["preemptions"] == 0 and preempting.extra["preemptions"] == 1
    assert preempting.completed == steady.completed == 2 and preempting.invalid_decisions == 0
    # A 3 s write when it stops and a 1 s read when it resumes.
    assert preempting.extra["checkpoint_s"] == pytest.approx(
        NO_NOISE.checkpoint_write_s + NO_NOISE.checkpoint_read_s
    )
    # Without preemption the high job waits for the whole low render; with it, for one step.
    assert preempting.extra["high_mean_latency_s"] < steady.extra["high_mean_latency_s"] / 3
    # The low job keeps its steps: it finishes later by only the stop's cost (the high job's render,
    # a step, the checkpoint), not by the steps it had done.
    low_steady = steady.extra["low_mean_latency_s"]
    low_preempted = preempting.extra["low_mean_latency_s"]
    high_alone = preempting.extra["high_mean_latency_s"]
    assert low_steady < low_preempted < low_steady + high_alone + 60.0


def test_a_resumed_job_pays_its_set_up_and_decoding_again_and_redoes_no_step() -> None:
    steady, preempting = run("wanfarm-no-preempt").report, run("wanfarm").report
    assert preempting.extra["preemptions"] == 1
    # Both jobs are of one model, so the low job resumes with the weights hot: beyond its own render
    # it pays the checkpoint's write and read and a second set-up (the decoding runs once, at the end).
    extra = NO_NOISE.checkpoint_write_s + NO_NOISE.checkpoint_read_s + OVERHEAD_S
    assert preempting.owner_gpu_seconds["ann"] == pytest.approx(steady.owner_gpu_seconds["ann"] + extra)


class DoomedThenStopped:
    """Starts the low job under a profile that cannot fit the card, then asks to stop it for the
    high one: an attempt that runs out of memory has nothing to checkpoint."""

    name = "doomed-then-stopped"

    def place(self, snapshot: Snapshot) -> Decisions:
        agent = snapshot.agents[0]
        pending = {job.job_id: job for job in snapshot.pending}
        if agent.running_job is None and pending:
            job = pending.get("high") or pending["low"]
            profile = Profile.P1 if job.job_id == "low" and not job.attempts else Profile.P4
            return Decisions(assignments=(Assignment(job.job_id, agent.agent_id, profile, 0.0, 1.0, "test"),))
        if agent.running_job == "low" and "high" in pending:
            return Decisions(preemptions=(Preemption("low", agent.agent_id, "high", "test"),))
        return Decisions()

    def observe(self, observation: Observation) -> None:
        pass


def test_an_attempt_that_runs_out_of_memory_is_not_stopped_with_its_steps() -> None:
    # The 14B model in full (profile 1) does not fit a 4090: the attempt dies a tenth into its
    # render. A stop asked before then would have checkpointed steps no card could have rendered.
    high = TraceJob("high", 5.0, HIGH.work, 90, "bob")
    report = simulate(POOL, [LOW, high], DoomedThenStopped(), truth=NO_NOISE).report
    assert report.oom_failures == 1
    assert report.extra["preemptions"] == 0
    assert report.completed == 2
