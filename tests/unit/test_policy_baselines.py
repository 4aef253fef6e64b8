"""The baseline policies each follow their anchor's rule on hand-built snapshots."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from scheduler.baselines.horde import max_pixels
from scheduler.registry import get_policy
from scheduler.snapshot import AgentView, Decisions, PendingJob, Snapshot
from tests.declared_agents import declared_agent
from tests.job_records import pending_job

WAN_14B = "wan2.1-t2v-14b"
WAN_1_3B = "wan2.1-t2v-1.3b"
FLUX = "flux.1-dev"
NOW = 10_000.0
BASELINES = ("fifo", "affinity", "horde", "locality")


def job(job_id: str = "j1", model_id: str = WAN_1_3B, **changes: Any) -> PendingJob:
    """A 480p Wan 1.3B video submitted now, unless told otherwise."""
    defaults: dict[str, Any] = {"size": (832, 480, 81), "submitted_at": NOW}
    return pending_job(job_id, model_id, **(defaults | changes))


def place(name: str, agents: list[AgentView], pending: list[PendingJob]) -> Decisions:
    return get_policy(name).place(Snapshot(NOW, tuple(agents), tuple(pending)))


def placed(decisions: Decisions) -> dict[str, str]:
    return {a.job_id: a.agent_id for a in decisions.assignments}


def test_fifo_serves_the_oldest_job_first_whatever_its_priority() -> None:
    older = job("older", priority=0, submitted_at=NOW - 10)
    urgent = job("urgent", priority=100, submitted_at=NOW)
    decisions = place("fifo", [declared_agent("RTX 4090", "a")], [urgent, older])
    assert placed(decisions) == {"older": "a"}
    assert [w.job_id for w in decisions.waiting] == ["urgent"]


def test_fifo_takes_the_first_free_agent_that_can_run_the_job_not_the_fastest() -> None:
    agents = [declared_agent("H100 SXM", "z-fast"), declared_agent("RTX 3070", "a-small")]
    big = job("big", WAN_14B, size=(1280, 720, 81), submitted_at=NOW - 1)
    decisions = place("fifo", agents, [big, job("small")])
    assert placed(decisions) == {"big": "z-fast", "small": "a-small"}


def test_affinity_picks_the_agent_with_the_model_loaded_even_if_slower() -> None:
    agents = [declared_agent("H100 SXM", "a-fast"), declared_agent("RTX 3060", "b-hot", hot_model=WAN_1_3B)]
    [assignment] = place("affinity", agents, [job()]).assignments
    assert (assignment.agent_id, assignment.reason) == ("b-hot", "hot")


def test_affinity_without_a_loaded_replica_picks_the_least_loaded_free_agent() -> None:
    agents = [
        declared_agent("RTX 4090", "a-other", hot_model=WAN_14B),
        declared_agent("RTX 4090", "b-empty"),
        declared_agent("RTX 4090", "c-hot-busy", hot_model=WAN_1_3B, busy_until=NOW + 100),
    ]
    [assignment] = place("affinity", agents, [job()]).assignments
    assert (assignment.agent_id, assignment.reason) == ("b-empty", "least loaded")


def test_horde_refuses_workers_without_the_model_while_another_advertises_it() -> None:
    agents = [
        declared_agent("RTX 4090", "a-without"),
        declared_agent("RTX 4090", "b-has-it", cached_models=frozenset({WAN_1_3B}), busy_until=NOW + 100),
    ]
    decisions = place("horde", agents, [job()])
    assert decisions.assignments == ()
    assert WAN_1_3B in decisions.waiting[0].reason


def test_horde_falls_back_to_any_free_agent_when_no_worker_advertises_the_model() -> None:
    decisions = place("horde", [declared_agent("RTX 4090", "a")], [job()])
    assert [(a.agent_id, a.reason) for a in decisions.assignments] == [("a", "no worker advertises it")]


def test_horde_respects_a_workers_max_pixels() -> None:
    flux = frozenset({FLUX})
    small = declared_agent("RTX 4090", "a-small", cached_models=flux)
    large = declared_agent("A100 80GB", "b-large", cached_models=flux)
    poster = job("poster", FLUX, size=(2048, 2048, 1))
    assert max_pixels(small) < 2048 * 2048 <= max_pixels(large)
    assert placed(place("horde", [small, large], [poster])) == {"poster": "b-large"}
    assert place("horde", [small], [poster]).assignments == ()


def test_horde_gives_the_free_worker_the_highest_priority_request_with_aging() -> None:
    agent = declared_agent("RTX 4090", "a", cached_models=frozenset({WAN_1_3B}))
    low_old = job("low-old", priority=10, submitted_at=NOW - 3600)
    high_new = job("high-new", priority=50, submitted_at=NOW)
    low_recent = job("low-recent", priority=10, submitted_at=NOW - 60)
    assert placed(place("horde", [agent], [high_new, low_old])) == {"low-old": "a"}
    assert placed(place("horde", [agent], [low_recent, high_new])) == {"high-new": "a"}


def test_locality_picks_the_least_load_time_not_the_fastest_card() -> None:
    hot_slow = declared_agent("RTX 3060", "a-hot", hot_model=WAN_1_3B)
    cached_fast = declared_agent("H100 SXM", "b-cached", cached_models=frozenset({WAN_1_3B}))
    assert placed(place("locality", [cached_fast, hot_slow], [job()])) == {"j1": "a-hot"}


def test_locality_prefers_the_holder_with_the_faster_disk_then_any_holder_over_a_download() -> None:
    cached = frozenset({WAN_1_3B})
    slow_disk = replace(declared_agent("RTX 4090", "a-slow", cached_models=cached), disk_bytes_per_s=0.5e9)
    fast_disk = replace(declared_agent("RTX 4090", "b-fast", cached_models=cached), disk_bytes_per_s=5e9)
    cold = replace(declared_agent("H100 SXM", "c-cold"), net_bytes_per_s=10e9)
    assert placed(place("locality", [slow_disk, fast_disk, cold], [job()])) == {"j1": "b-fast"}
    assert placed(place("locality", [slow_disk, cold], [job()])) == {"j1": "a-slow"}


@pytest.mark.parametrize("name", BASELINES)
def test_a_baseline_never_places_a_job_that_does_not_fit_and_says_why(name: str) -> None:
    decisions = place(
        name, [declared_agent("RTX 3070", "small")], [job(model_id=WAN_14B, size=(1280, 720, 81))]
    )
    assert decisions.assignments == ()
    [waiting] = decisions.waiting
    assert waiting.reason.startswith("no agent can run it: ") and "VRAM" in waiting.reason


@pytest.mark.parametrize("name", BASELINES)
def test_a_baseline_gives_each_agent_one_job_leaves_the_snapshot_alone_and_repeats_itself(name: str) -> None:
    agents = [
        declared_agent("RTX 4090", "a", hot_model=WAN_1_3B),
        declared_agent("RTX 3090", "b", cached_models=frozenset({WAN_14B})),
        declared_agent("RTX 4090", "c", busy_until=NOW + 10),
    ]
    jobs = [job(f"j{i}", [WAN_1_3B, WAN_14B][i % 2], submitted_at=NOW - i) for i in range(5)]
    snapshot = Snapshot(NOW, tuple(agents), tuple(jobs))
    before = copy.deepcopy(snapshot)
    decisions = get_policy(name).place(snapshot)
    assert snapshot == before
    assert len(set(placed(decisions).values())) == len(decisions.assignments) == 2
    assert "c" not in placed(decisions).values()
    assert len(decisions.assignments) + len(decisions.waiting) == len(jobs)
    assert get_policy(name).place(Snapshot(NOW, tuple(agents[::-1]), tuple(jobs[::-1]))) == decisions
