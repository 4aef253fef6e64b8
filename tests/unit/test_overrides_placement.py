"""Jobs that force a memory profile or an attention kernel: which agents can run them (pure
feasibility over agent views), what a user is told when none can, and where the policies place them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from models.attention import AttentionMode
from models.catalogue import get_model
from models.overrides import Overrides
from models.profiles import Profile
from scheduler.feasibility import choose_profile, pool_refusal, why_not
from scheduler.registry import get_policy
from scheduler.snapshot import AgentView, PendingJob, Snapshot
from tests.declared_agents import declared_agent
from tests.job_records import WAN_14B, pending_job

NOW = 1_000.0
WAN = get_model(WAN_14B)
PROFILE_1 = Overrides(profile=Profile.P1)
SAGE = Overrides(attention=AttentionMode.SAGE)
SAGE2 = Overrides(attention=AttentionMode.SAGE2)


def forcing(overrides: Overrides | None, job_id: str = "j1") -> PendingJob:
    """A 720p Wan 14B video (profile 1 needs 35.2 GiB VRAM and 59.8 GiB RAM) forcing `overrides`."""
    return replace(pending_job(job_id, submitted_at=NOW), overrides=overrides)


def reporting(agent: AgentView, *modes: AttentionMode) -> AgentView:
    """The agent as it reports the kernels it has installed."""
    return replace(agent, attention_modes=frozenset(modes))


def test_a_forced_profile_is_the_only_profile_chosen_and_only_where_it_fits() -> None:
    work = forcing(None).work
    big = declared_agent("H100 SXM", ram_gib=128)
    rtx = declared_agent("RTX 4090")
    assert choose_profile(WAN, work, rtx) is Profile.P3  # the farm's own pick on a 24 GB card
    assert choose_profile(WAN, work, big, PROFILE_1) is Profile.P1
    assert choose_profile(WAN, work, rtx, PROFILE_1) is None
    assert choose_profile(WAN, work, rtx, Overrides(profile=Profile.P5)) is Profile.P5
    assert why_not(WAN, work, rtx, PROFILE_1) == (
        "profile 1 does not fit on RTX 4090: needs 35.2 GiB VRAM (denoise), has 24.0 GiB"
    )


def test_a_forced_kernel_runs_only_where_the_architecture_allows_it_or_the_agent_reports_it() -> None:
    work = forcing(None).work
    turing = declared_agent("RTX 2080 Ti", ram_gib=64)  # sm75: sage, not sage2
    ada = declared_agent("RTX 4090")
    assert choose_profile(WAN, work, turing, SAGE) is not None
    assert choose_profile(WAN, work, turing, SAGE2) is None
    assert choose_profile(WAN, work, ada, SAGE2) is Profile.P3
    # Reported kernels are what the agent has installed: an Ada card without SageAttention.
    assert choose_profile(WAN, work, reporting(ada, AttentionMode.SDPA), SAGE) is None
    assert why_not(WAN, work, reporting(ada, AttentionMode.SDPA), SAGE) == (
        "attention 'sage' is not available on RTX 4090 (it runs sdpa)"
    )


@pytest.mark.parametrize("mode", [AttentionMode.SDPA, AttentionMode.AUTO])
def test_sdpa_and_auto_run_on_every_agent(mode: AttentionMode) -> None:
    cpu_like = reporting(declared_agent("RTX 4090"), AttentionMode.SDPA)
    assert choose_profile(WAN, forcing(None).work, cpu_like, Overrides(attention=mode)) is Profile.P3


def test_a_pool_where_the_forced_profile_fits_nowhere_refuses_naming_the_key() -> None:
    pool = [declared_agent("RTX 4090", "a"), declared_agent("RTX 3060", "b")]
    work = forcing(None).work
    assert pool_refusal(WAN, work, pool) is None
    assert pool_refusal(WAN, work, pool, PROFILE_1) == (
        "wan2.1-t2v-14b at 1280x720x81 cannot run: override_profile: profile 1 does not fit on any "
        "agent: on the largest GPU (RTX 4090) it needs 35.2 GiB VRAM (denoise), has 24.0 GiB"
    )


def test_a_pool_without_the_forced_kernel_refuses_naming_the_key_and_what_each_card_runs() -> None:
    pool = [
        declared_agent("RTX 2080 Ti", "a"),
        reporting(declared_agent("RTX 4090", "b"), AttentionMode.SDPA),
    ]
    assert pool_refusal(WAN, forcing(None).work, pool, SAGE2) == (
        "wan2.1-t2v-14b at 1280x720x81 cannot run: override_attention: attention 'sage2' is not "
        "available on any agent: RTX 2080 Ti runs sage, sdpa, xformers; RTX 4090 runs sdpa"
    )


def test_a_profile_that_fits_only_where_the_kernel_is_missing_is_refused_for_the_kernels_cards() -> None:
    pool = [
        reporting(declared_agent("H100 SXM", "big", ram_gib=128), AttentionMode.SDPA),
        declared_agent("RTX 4090", "small"),
    ]
    both = Overrides(Profile.P1, AttentionMode.SAGE)
    assert pool_refusal(WAN, forcing(None).work, pool, both) == (
        "wan2.1-t2v-14b at 1280x720x81 cannot run: override_profile: profile 1 does not fit on any "
        "agent that runs attention 'sage': on the largest GPU (RTX 4090) it needs 35.2 GiB VRAM "
        "(denoise), has 24.0 GiB"
    )


# Profile 2 pins every weight: 59.8 GiB of RAM for a 720p Wan 14B video, where profile 3 needs 29.1.
PROFILE_2 = Overrides(profile=Profile.P2)


def hot_and_roomy(busy_until: float | None = None) -> tuple[AgentView, AgentView]:
    """A hot 4090 on a 48 GiB node, and a colder, slower 3090 on a 128 GiB node."""
    hot = declared_agent("RTX 4090", "a-hot", ram_gib=48, hot_model=WAN_14B)
    return hot, declared_agent("RTX 3090", "b-roomy", ram_gib=128, busy_until=busy_until)


@pytest.mark.parametrize("policy", ["wanfarm", "greedy", "fifo"])
def test_the_job_skips_the_hot_agent_where_its_profile_does_not_fit(policy: str) -> None:
    free = get_policy(policy).place(Snapshot(NOW, hot_and_roomy(), (forcing(None, "plain"),)))
    [plain] = free.assignments
    assert plain.agent_id == "a-hot"  # at 3 or 4, which fit its node
    forced = get_policy(policy).place(Snapshot(NOW, hot_and_roomy(), (forcing(PROFILE_2, "forced"),)))
    [only] = forced.assignments
    assert (only.agent_id, only.profile) == ("b-roomy", Profile.P2)


def test_a_forced_job_waits_for_the_one_agent_it_fits_while_a_plain_job_takes_the_free_one() -> None:
    pool = hot_and_roomy(busy_until=NOW + 600)
    pending = (forcing(PROFILE_2, "forced"), forcing(None, "plain"))
    decisions = get_policy("wanfarm").place(Snapshot(NOW, pool, pending))
    assert {a.job_id: a.agent_id for a in decisions.assignments} == {"plain": "a-hot"}
    [wait] = decisions.waiting
    assert wait.job_id == "forced" and "b-roomy" in wait.reason


def test_a_forced_job_no_agent_can_run_waits_with_the_refusal() -> None:
    pool = (declared_agent("RTX 4090", "a"),)
    decisions = get_policy("wanfarm").place(Snapshot(NOW, pool, (forcing(PROFILE_1), forcing(None, "j2"))))
    assert [a.job_id for a in decisions.assignments] == ["j2"]
    [wait] = decisions.waiting
    assert wait.reason.startswith(
        "no agent can run it: wan2.1-t2v-14b at 1280x720x81 cannot run: override_profile"
    )
