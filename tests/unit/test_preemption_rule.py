"""Preemption by priority (scheduler.preemption): which running job, if any, a queued one stops."""

from __future__ import annotations

from dataclasses import replace

from models.profiles import Profile
from scheduler.preemption import MAX_PREEMPTIONS, WAIT_S, PreemptionRule, priority_class
from scheduler.registry import get_policy
from scheduler.snapshot import AgentView, Assignment, Decisions, PendingJob, Snapshot, Waiting
from tests.declared_agents import declared_agent
from tests.job_records import pending_job

NOW = 10_000.0
LONG = NOW + 3600.0  # a running job's estimated end: an hour away
WAN_13B = "wan2.1-t2v-1.3b"


def running(
    agent_id: str,
    job_id: str,
    priority: int,
    step: int = 0,
    total: int = 30,
    *,
    busy_until: float = LONG,
    preemptions: int = 0,
    preempting: bool = False,
) -> AgentView:
    """An RTX 4090 running `job_id`, at `step` of `total` reported 1 s ago, a minute a step."""
    agent = declared_agent("RTX 4090", agent_id, busy_until=busy_until)
    return replace(
        agent,
        running_model=WAN_13B,
        running_job=job_id,
        running_priority=priority,
        running_preemptions=preemptions,
        running_step=step,
        running_total=total if step else 0,
        running_since=NOW - 1.0 - 60.0 * max(step, 1),
        running_step_at=NOW - 1.0 if step else None,
        preempting=preempting,
    )


def high(job_id: str = "urgent", priority: int = 90) -> PendingJob:
    return pending_job(job_id, WAN_13B, size=(832, 480, 33), steps=30, priority=priority, submitted_at=NOW)


def waited(*jobs: PendingJob, eta: float | None = LONG + 600) -> Decisions:
    """What placement decided: every job waits, expecting to finish at `eta`."""
    return Decisions(
        waiting=tuple(Waiting(job.job_id, "every agent that can run it is busy", eta) for job in jobs)
    )


def anywhere(job: PendingJob, agent: AgentView) -> float | None:
    return NOW + 60.0  # every agent runs it in a minute once free


def choose(
    agents: list[AgentView], jobs: list[PendingJob], decisions: Decisions | None = None
) -> list[tuple[str, str, str]]:
    snapshot = Snapshot(NOW, tuple(agents), tuple(jobs))
    chosen = PreemptionRule().choose(snapshot, decisions or waited(*jobs), anywhere)
    return [(p.job_id, p.agent_id, p.for_job_id) for p in chosen]


def test_priority_classes_are_bands_of_25() -> None:
    assert [priority_class(p) for p in (0, 24, 25, 49, 50, 74, 75, 100)] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_a_high_job_stops_the_lowest_priority_least_progressed_job_and_says_why() -> None:
    agents = [running("a", "low-late", 10, 20), running("b", "low-early", 10, 3), running("c", "mid", 40, 1)]
    snapshot = Snapshot(NOW, tuple(agents), (high(),))
    [preemption] = PreemptionRule().choose(snapshot, waited(high()), anywhere)
    assert (preemption.job_id, preemption.agent_id, preemption.for_job_id) == ("low-early", "b", "urgent")
    assert "priority 90 job urgent would wait" in preemption.reason
    assert (
        "low-early (priority 10, step 3/30, preempted 0 times before) checkpoints on b" in preemption.reason
    )


def test_no_preemption_within_a_class_or_for_a_lower_one() -> None:
    assert choose([running("a", "other", 60, 2)], [high(priority=74)]) == []
    assert choose([running("a", "other", 90, 2)], [high(priority=80)]) == []


def test_no_preemption_while_an_agent_that_can_run_it_is_free() -> None:
    idle = declared_agent("RTX 4090", "idle")
    assert choose([running("a", "low", 10, 2), idle], [high()]) == []


def test_no_preemption_when_an_agent_frees_within_the_bound() -> None:
    # 10 s a step since the start, 2 steps left: it frees in about 20 s, whatever its estimate says.
    soon = running("a", "low", 10, 28, total=30)
    soon = replace(soon, running_since=NOW - 281.0)
    assert choose([soon, running("b", "low2", 10, 2)], [high()]) == []
    # Estimated to end within WAIT_S and no step reported yet: it is waited for too.
    assert choose([running("a", "low", 10, busy_until=NOW + WAIT_S / 2)], [high()]) == []


def test_a_job_is_preempted_at_most_max_preemptions_times_and_never_near_its_end() -> None:
    worn = running("a", "worn", 10, 2, preemptions=MAX_PREEMPTIONS)
    nearly = running("b", "nearly", 10, 27, busy_until=LONG)
    nearly = replace(nearly, running_since=NOW - 27_000.0)  # slow: 1000 s a step, still 3000 s to go
    assert choose([worn, nearly], [high()]) == []
    fresh = running("c", "fresh", 10, 2, preemptions=MAX_PREEMPTIONS - 1)
    assert choose([worn, nearly, fresh], [high()]) == [("fresh", "c", "urgent")]


def test_one_preemption_per_agent_and_an_agent_stopping_serves_the_next_job() -> None:
    agents = [running("a", "low", 10, 2)]
    assert choose(agents, [high("first"), high("second")]) == [("low", "a", "first")]
    # A later round: the agent is still stopping for "first", so nothing else is stopped for it.
    stopping = [running("a", "low", 10, 2, preempting=True), running("b", "low2", 10, 2)]
    assert choose(stopping, [high("first")]) == []
    assert choose(stopping, [high("first"), high("second")]) == [("low2", "b", "second")]


def test_no_preemption_that_would_not_bring_the_job_forward() -> None:
    # A fast card frees in 120 s (its job reported steps of 10 s, 12 to go), and renders the job in
    # 10 s; the slow card running a low job would take 400 s: waiting finishes sooner, nothing stops.
    fast = replace(running("fast", "other", 80, 18), running_since=NOW - 181.0)
    slow = running("slow", "low", 10, 2)

    def finish_on(job: PendingJob, agent: AgentView) -> float | None:
        return NOW + (10.0 if agent.agent_id == "fast" else 400.0)

    snapshot = Snapshot(NOW, (fast, slow), (high(),))
    assert PreemptionRule().choose(snapshot, waited(high(), eta=NOW + 130.0), finish_on) == ()
    # Were the slow card as quick, stopping its job would bring the finish forward by 120 s.
    assert len(PreemptionRule().choose(snapshot, waited(high(), eta=NOW + 130.0), anywhere)) == 1


def test_an_agent_placement_just_took_is_not_preempted_for_another() -> None:
    agents = [running("a", "low", 10, 2)]
    taken = Decisions(
        assignments=(Assignment("other", "a", Profile.P4, NOW, NOW + 60, "hot"),),
        waiting=waited(high()).waiting,
    )
    assert choose(agents, [high()], taken) == []


def test_the_wanfarm_policy_preempts_and_its_wait_says_so_the_baselines_do_not() -> None:
    agents = (running("a", "low", 10, 2),)
    snapshot = Snapshot(NOW, agents, (high(),))
    decisions = get_policy("wanfarm").place(snapshot)
    [preemption] = decisions.preemptions
    assert (preemption.job_id, preemption.agent_id, preemption.for_job_id) == ("low", "a", "urgent")
    [wait] = decisions.waiting
    assert wait.reason == "preempting low on a"
    for name in ("wanfarm-no-preempt", "greedy", "fifo"):
        assert get_policy(name).place(snapshot).preemptions == ()


def test_wanfarm_never_stops_a_job_that_would_queue_again_ahead_of_the_one_it_stops_for() -> None:
    # A stopped job queues again with its own submit time. A priority-10 job submitted 90 minutes
    # ago stands at 10 + 90 by its aging, above a fresh priority-90 job: stopped, it would take the
    # agent straight back. One submitted 10 minutes ago stands at 20 and is stopped.
    def low(submitted_minutes_ago: float) -> AgentView:
        return replace(running("a", "low", 10, 2), running_submitted_at=NOW - 60.0 * submitted_minutes_ago)

    wanfarm = get_policy("wanfarm")
    assert wanfarm.place(Snapshot(NOW, (low(90),), (high(),))).preemptions == ()
    [preemption] = wanfarm.place(Snapshot(NOW, (low(10),), (high(),))).preemptions
    assert (preemption.job_id, preemption.for_job_id) == ("low", "urgent")
