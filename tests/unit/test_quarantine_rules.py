"""The quarantine rules (scheduler.quarantine), pure: outcomes in, verdicts out, on a hand-set clock."""

from __future__ import annotations

from scheduler.quarantine import (
    AttemptOutcome,
    QuarantineKind,
    QuarantineRules,
    QuarantineTracker,
    Verdict,
    probe_wait,
    retry_elsewhere,
)
from tests.job_records import TINY_WORK

RULES = QuarantineRules()


def _attempt(agent: str, at: float, ok: bool, seconds: float = 10.0, gpu: str = "RTX 4090") -> AttemptOutcome:
    return AttemptOutcome(
        agent_id=agent,
        node_id=f"node-{agent}",
        gpu_name=gpu,
        work=TINY_WORK,
        at=at,
        succeeded=ok,
        render_seconds=seconds if ok else 0.0,
        error=None if ok else "OSError: [Errno 28] No space left on device\nmore",
    )


def _kinds(verdicts: list[Verdict]) -> list[tuple[str, QuarantineKind]]:
    return [(v.agent_id, v.kind) for v in verdicts]


def test_three_failures_of_a_model_that_succeeds_elsewhere_quarantine_the_agent() -> None:
    tracker = QuarantineTracker()
    assert tracker.record_attempt(_attempt("good", 0, ok=True)) == []
    assert tracker.record_attempt(_attempt("bad", 10, ok=False)) == []
    assert tracker.record_attempt(_attempt("bad", 20, ok=False)) == []
    [verdict] = tracker.record_attempt(_attempt("bad", 30, ok=False))
    assert (verdict.agent_id, verdict.kind, verdict.since) == ("bad", QuarantineKind.FAILURES, 30)
    assert "3 failed attempts in 10 min" in verdict.reason and "wan-tiny" in verdict.reason
    assert "No space left on device" in verdict.reason and "more" not in verdict.reason
    # Quarantined once: more failures say nothing new.
    assert tracker.record_attempt(_attempt("bad", 40, ok=False)) == []


def test_a_success_elsewhere_after_the_failures_quarantines_the_agent_that_failed() -> None:
    tracker = QuarantineTracker()
    for at in (0, 1, 2):
        assert tracker.record_attempt(_attempt("bad", at, ok=False)) == []
    [verdict] = tracker.record_attempt(_attempt("good", 5, ok=True))
    assert (verdict.agent_id, verdict.kind, verdict.since) == ("bad", QuarantineKind.FAILURES, 5)
    # Failures the window has forgotten by then are not counted.
    late = QuarantineTracker()
    for at in (0, 1, 2):
        late.record_attempt(_attempt("bad", at, ok=False))
    assert late.record_attempt(_attempt("good", RULES.failure_window_s + 1, ok=True)) == []


def test_failures_of_a_model_nobody_renders_blame_no_agent() -> None:
    tracker = QuarantineTracker()
    for at in range(5):
        assert tracker.record_attempt(_attempt("bad", at, ok=False)) == []
    assert tracker.record_attempt(_attempt("other", 6, ok=False)) == []


def test_failures_spread_wider_than_the_window_do_not_add_up() -> None:
    tracker = QuarantineTracker()
    tracker.record_attempt(_attempt("good", 0, ok=True))
    gap = RULES.failure_window_s / 2 + 1
    for n in range(4):
        assert tracker.record_attempt(_attempt("bad", n * gap, ok=False)) == [], n


def test_actor_lost_three_times_on_one_agent_quarantines_it_alone() -> None:
    tracker = QuarantineTracker()
    node_agents = ["a0", "a1"]
    assert tracker.record_lost("a0", "n", node_agents, 0) == []
    assert tracker.record_lost("a0", "n", node_agents, 100) == []
    verdicts = tracker.record_lost("a0", "n", node_agents, 200)
    assert _kinds(verdicts) == [("a0", QuarantineKind.LOST)]
    assert "actor lost 3 times" in verdicts[0].reason


def test_losses_across_a_nodes_agents_quarantine_the_whole_node() -> None:
    tracker = QuarantineTracker()
    node_agents = ["a0", "a1", "a2"]
    tracker.record_lost("a0", "n", node_agents, 0)
    tracker.record_lost("a1", "n", node_agents, 10)
    verdicts = tracker.record_lost("a0", "n", node_agents, 20)
    assert _kinds(verdicts) == [(a, QuarantineKind.LOST) for a in node_agents]
    assert verdicts[0].reason.startswith("node n: 3 agent actors lost")


def test_losses_older_than_the_window_are_forgotten() -> None:
    tracker = QuarantineTracker()
    for n in range(5):
        assert tracker.record_lost("a0", "n", ["a0"], n * (RULES.loss_window_s / 2 + 1)) == []


def test_storage_errors_growing_by_the_threshold_within_the_window() -> None:
    tracker = QuarantineTracker()
    assert tracker.record_storage_errors("b", "m", 1, 0) == []  # another agent, whose store answers
    assert tracker.record_storage_errors("a", "n", 2, 0) == []  # errors from long ago are the base
    assert tracker.record_storage_errors("a", "n", 5, 100) == []
    assert tracker.record_storage_errors("b", "m", 1, 150) == []
    [verdict] = tracker.record_storage_errors("a", "n", 7, 200)
    assert verdict.kind is QuarantineKind.STORAGE and verdict.reason.startswith("5 object-storage errors")


def test_storage_errors_every_agent_sees_are_an_outage_of_the_store_not_an_agents_fault() -> None:
    tracker = QuarantineTracker()
    for at, count in ((0, 0), (100, 4), (200, 8)):
        assert tracker.record_storage_errors("a", "n", count, at) == []
        assert tracker.record_storage_errors("b", "m", count, at) == []
    alone = QuarantineTracker()  # with no other agent to compare, nothing stands out either
    assert (
        alone.record_storage_errors("a", "n", 0, 0) == []
        and alone.record_storage_errors("a", "n", 9, 1) == []
    )


def test_storage_errors_growing_slowly_or_counted_again_after_a_restart_are_not_held() -> None:
    tracker = QuarantineTracker()
    step = RULES.storage_window_s / 2 + 1
    for n in range(10):
        assert tracker.record_storage_errors("a", "n", n * 2, n * step) == [], n
    # The actor restarted: its count starts again from zero, not a drop of 18.
    assert tracker.record_storage_errors("b", "n", 4, 0) == []
    assert tracker.record_storage_errors("b", "n", 0, 1) == []
    assert tracker.record_storage_errors("b", "n", 4, 2) == []


def test_an_agent_three_times_slower_than_its_gpu_model_elsewhere_on_three_jobs() -> None:
    tracker = QuarantineTracker()
    for n, agent in enumerate(["g1", "g2", "g3"]):
        tracker.record_attempt(_attempt(agent, n, ok=True, seconds=10.0))
    # Another GPU model is no reference.
    assert tracker.record_attempt(_attempt("slow", 3, ok=True, seconds=100.0, gpu="RTX 3060")) == []
    assert tracker.record_attempt(_attempt("slow", 4, ok=True, seconds=40.0)) == []
    assert tracker.record_attempt(_attempt("slow", 5, ok=True, seconds=40.0)) == []
    [verdict] = tracker.record_attempt(_attempt("slow", 6, ok=True, seconds=40.0))
    assert verdict.kind is QuarantineKind.SLOW
    assert verdict.reason.startswith("rendered 4.0x slower than other RTX 4090 agents on 3 wan-tiny jobs")


def test_a_fast_job_between_slow_ones_resets_the_streak_and_twice_slower_is_fine() -> None:
    tracker = QuarantineTracker()
    for n, agent in enumerate(["g1", "g2", "g3"]):
        tracker.record_attempt(_attempt(agent, n, ok=True, seconds=10.0))
    for seconds in (40.0, 40.0, 10.0, 40.0, 40.0, 20.0, 20.0, 20.0):
        assert tracker.record_attempt(_attempt("x", 10, ok=True, seconds=seconds)) == []


def test_a_released_agent_is_judged_afresh() -> None:
    tracker = QuarantineTracker()
    tracker.hold(["a0"])  # read back from the store
    for at in (0, 1, 2):
        assert tracker.record_lost("a0", "n", ["a0"], at) == []
    tracker.release("a0")
    assert tracker.record_lost("a0", "n", ["a0"], 3) == []
    assert tracker.record_lost("a0", "n", ["a0"], 4) == []
    assert _kinds(tracker.record_lost("a0", "n", ["a0"], 5)) == [("a0", QuarantineKind.LOST)]


def test_a_first_failure_is_retried_elsewhere_a_second_agents_failure_is_the_jobs() -> None:
    assert retry_elsewhere("a", failed_on=[], others_can_run=True)
    assert not retry_elsewhere("a", failed_on=[], others_can_run=False)
    assert not retry_elsewhere("b", failed_on=["a"], others_can_run=True)
    assert retry_elsewhere("a", failed_on=["a"], others_can_run=True)


def test_probes_back_off_up_to_the_cap() -> None:
    waits = [probe_wait(RULES, n) for n in range(8)]
    assert waits[:3] == [RULES.probe_cooldown_s, 2 * RULES.probe_cooldown_s, 4 * RULES.probe_cooldown_s]
    assert waits[-1] == RULES.probe_max_wait_s and waits == sorted(waits)
