"""The greedy policy on hand-built snapshots: who gets which job, and what a waiting job is told."""

from __future__ import annotations

import copy

import pytest

from models.catalogue import ModelPreset, get_model
from models.profiles import Profile
from scheduler import registry
from scheduler.baselines.greedy import GreedyPolicy
from scheduler.cost import job_seconds
from scheduler.registry import get_policy, policy_names, register
from scheduler.snapshot import AgentView, Decisions, Observation, PendingJob, Snapshot
from tests.declared_agents import declared_agent
from tests.job_records import pending_job

WAN_14B = get_model("t2v").id  # wan2.1-t2v-14b
WAN_1_3B = "wan2.1-t2v-1.3b"
NOW = 1000.0


job = pending_job  # a 720p Wan 14B video, submitted at 0


def place(agents: list[AgentView], pending: list[PendingJob]) -> Decisions:
    return get_policy("greedy").place(Snapshot(NOW, tuple(agents), tuple(pending)))


def placed(decisions: Decisions) -> dict[str, str]:
    """job id -> agent id."""
    return {a.job_id: a.agent_id for a in decisions.assignments}


def test_a_14b_job_skips_the_8gb_card_for_the_24gb_one() -> None:
    decisions = place([declared_agent("RTX 3070", "small"), declared_agent("RTX 3090", "big")], [job()])
    assert placed(decisions) == {"j1": "big"}
    assert decisions.waiting == ()


def test_a_14b_job_is_never_placed_on_an_8gb_card_even_when_it_is_the_only_one() -> None:
    decisions = place([declared_agent("RTX 3070", "small")], [job()])
    assert decisions.assignments == ()
    [waiting] = decisions.waiting
    assert waiting.reason.startswith("no agent can run it: ")
    assert "9.3 GiB VRAM" in waiting.reason and "8.0 GiB" in waiting.reason
    assert waiting.eta is None


def test_the_assignment_uses_the_fastest_profile_that_fits() -> None:
    agent = declared_agent("RTX 4090", "a", ram_gib=128)
    [assignment] = place([agent], [job(model_id=WAN_1_3B)]).assignments
    assert assignment.profile is Profile.P1


def test_a_hot_agent_is_preferred_over_a_faster_cold_one() -> None:
    hot = declared_agent("RTX 3090", "hot", hot_model=WAN_14B)
    [assignment] = place([declared_agent("H100 SXM", "fast"), hot], [job()]).assignments
    assert (assignment.agent_id, assignment.reason) == ("hot", "hot")


def test_a_cached_agent_is_preferred_over_an_uncached_faster_one() -> None:
    cached = declared_agent("RTX 3090", "cached", cached_models=frozenset({WAN_14B}))
    [assignment] = place([declared_agent("RTX 4090", "fast"), cached], [job()]).assignments
    assert (assignment.agent_id, assignment.reason) == ("cached", "cached")


def test_without_warm_weights_the_fastest_card_wins() -> None:
    agents = [
        declared_agent("RTX 3090", "a"),
        declared_agent("H100 SXM", "b"),
        declared_agent("RTX 4090", "c"),
    ]
    [assignment] = place(agents, [job()]).assignments
    assert (assignment.agent_id, assignment.reason) == ("b", "fastest free")


def test_a_hot_model_only_counts_when_it_is_the_jobs_model() -> None:
    other = declared_agent("RTX 3090", "other", hot_model=WAN_1_3B)
    [assignment] = place([other, declared_agent("RTX 4090", "fast")], [job()]).assignments
    assert assignment.agent_id == "fast"


def test_the_higher_priority_job_gets_the_only_free_agent() -> None:
    low, high = job("low", priority=10, submitted_at=0), job("high", priority=90, submitted_at=50)
    decisions = place([declared_agent("RTX 4090", "a")], [low, high])
    assert placed(decisions) == {"high": "a"}
    assert [w.job_id for w in decisions.waiting] == ["low"]


def test_equal_priority_goes_to_the_older_job() -> None:
    newer, older = job("newer", submitted_at=20), job("older", submitted_at=10)
    decisions = place([declared_agent("RTX 4090", "a")], [newer, older])
    assert placed(decisions) == {"older": "a"}


def test_an_agent_the_job_died_on_is_avoided() -> None:
    agents = [declared_agent("H100 SXM", "fast"), declared_agent("RTX 4090", "slow")]
    decisions = place(agents, [job(avoid=frozenset({"fast"}))])
    assert placed(decisions) == {"j1": "slow"}


def test_a_job_that_avoids_every_capable_agent_waits_and_says_why() -> None:
    agents = [declared_agent("RTX 4090", "a"), declared_agent("RTX 3070", "small")]
    decisions = place(agents, [job(avoid=frozenset({"a"}))])
    assert decisions.assignments == ()
    [waiting] = decisions.waiting
    assert "failed it before" in waiting.reason and "(a)" in waiting.reason


def test_each_agent_takes_at_most_one_job_per_round() -> None:
    agents = [declared_agent("RTX 4090", "a"), declared_agent("RTX 3090", "b")]
    decisions = place(agents, [job("j1"), job("j2", submitted_at=1), job("j3", submitted_at=2)])
    assert sorted(placed(decisions).values()) == ["a", "b"]
    assert [w.job_id for w in decisions.waiting] == ["j3"]


def test_busy_agents_are_not_assigned_and_the_wait_has_an_eta_from_the_earliest() -> None:
    soon = declared_agent("RTX 4090", "soon", busy_until=NOW + 100)
    late = declared_agent("RTX 4090", "late", busy_until=NOW + 5000)
    decisions = place([late, soon], [job()])
    assert decisions.assignments == ()
    [waiting] = decisions.waiting
    assert waiting.reason == "waiting for a free agent that can run it"
    preset = get_model(WAN_14B)
    profile = Profile.P3  # what a 4090 with 64 GiB uses for this job
    assert waiting.eta == pytest.approx(NOW + 100 + job_seconds(preset, job().work, soon, profile))


def test_a_job_waiting_behind_one_placed_this_round_gets_an_eta_after_it() -> None:
    decisions = place([declared_agent("RTX 4090", "a")], [job("first"), job("second", submitted_at=1)])
    [assignment] = decisions.assignments
    [waiting] = decisions.waiting
    assert waiting.eta is not None and waiting.eta > assignment.est_finish


def test_estimates_start_now_and_a_hot_agent_finishes_sooner() -> None:
    cold = place([declared_agent("RTX 4090", "a")], [job()]).assignments[0]
    hot = place([declared_agent("RTX 4090", "a", hot_model=WAN_14B)], [job()]).assignments[0]
    assert cold.est_start == hot.est_start == NOW
    assert NOW < hot.est_finish < cold.est_finish


def test_an_unknown_model_waits_with_a_reason() -> None:
    decisions = place([declared_agent("RTX 4090", "a")], [job(model_id="no-such-model")])
    [waiting] = decisions.waiting
    assert waiting.reason.startswith("unknown model") and "no-such-model" in waiting.reason


def test_the_policy_uses_the_preset_lookup_it_was_given() -> None:
    fp8 = _with_transformer_dtype(get_model(WAN_14B), "fp8")
    policy = get_policy("greedy", presets=lambda _: fp8)
    snapshot = Snapshot(
        NOW, (declared_agent("RTX 3090", "ampere"), declared_agent("RTX 4090", "ada")), (job(),)
    )
    assert placed(policy.place(snapshot)) == {"j1": "ada"}


def test_placing_does_not_change_the_snapshot() -> None:
    agents = (declared_agent("RTX 4090", "a", hot_model=WAN_14B), declared_agent("RTX 3070", "b"))
    snapshot = Snapshot(NOW, agents, (job("j1"), job("j2", priority=90), job("j3", model_id=WAN_1_3B)))
    before = copy.deepcopy(snapshot)
    GreedyPolicy().place(snapshot)
    assert snapshot == before


def test_the_same_snapshot_gives_the_same_decisions_whatever_the_order_of_its_lists() -> None:
    agents = [
        declared_agent(gpu, f"g{i}") for i, gpu in enumerate(["RTX 4090", "RTX 4090", "RTX 3060", "H100 SXM"])
    ]
    jobs = [job(f"j{i}", WAN_14B if i % 2 else WAN_1_3B, priority=50, submitted_at=i % 3) for i in range(6)]
    first = place(agents, jobs)
    assert place(agents, jobs) == first
    assert place(agents[::-1], jobs[::-1]) == first


def test_the_registry_builds_greedy_by_name() -> None:
    assert "greedy" in policy_names()
    policy = get_policy("greedy")
    assert isinstance(policy, GreedyPolicy) and policy.name == "greedy"


def test_an_unknown_policy_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown placement policy 'nope'.*greedy"):
        get_policy("nope")


def test_a_registered_policy_is_found_by_name_and_names_cannot_be_taken_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register("idle")
    class Idle:
        name = "idle"

        def place(self, snapshot: Snapshot) -> Decisions:
            return Decisions()

        def observe(self, observation: Observation) -> None:
            pass

    assert "idle" in policy_names()
    assert get_policy("idle").place(Snapshot(NOW, (), ())) == Decisions()
    with pytest.raises(ValueError, match="already registered"):
        register("idle")(GreedyPolicy)


def _with_transformer_dtype(preset: ModelPreset, dtype: str) -> ModelPreset:
    components = [
        c.model_copy(update={"dtype": dtype}) if c.name == "transformer" else c for c in preset.components
    ]
    return preset.model_copy(update={"components": components})
