"""The wanfarm policy's memory margin: wide until a job of the shape has finished, never a refusal."""

from __future__ import annotations

from functools import partial

from models.catalogue import get_model
from models.profiles import Profile
from scheduler.snapshot import AgentView, Decisions, Observation, PendingJob, Snapshot
from scheduler.wanfarm.learning import SAFETY_MARGIN, UNMEASURED_MARGIN, Headroom, MemoryModel
from scheduler.wanfarm.policy import WanfarmPolicy
from tests.declared_agents import declared_agent
from tests.job_records import WAN_14B, pending_job

NOW = 10_000.0
SIZE = (1248, 720, 81)  # a 720p Wan 14B video: at profile 3 a 24 GB card fits it with 10% headroom
job = partial(pending_job, size=SIZE, submitted_at=NOW)


def place(agents: list[AgentView], pending: list[PendingJob], policy: WanfarmPolicy) -> Decisions:
    return policy.place(Snapshot(NOW, tuple(agents), tuple(pending)))


def finished(the_job: PendingJob, profile: Profile, peak_over_estimate: float) -> Observation:
    need = MemoryModel().need(get_model(the_job.work.model_id), profile, the_job.work.size)
    return Observation(
        the_job.job_id, the_job.work, "RTX 5090", profile, render_seconds=2000.0, load_seconds=10.0,
        peak_vram_bytes=int(need.vram_bytes * peak_over_estimate),
    )  # fmt: skip


def test_the_margins_leave_a_24_gb_card_profile_3_only_once_measured() -> None:
    # What the tests below rest on: at profile 3 the job fits a 24 GB card with SAFETY_MARGIN,
    # not with UNMEASURED_MARGIN.
    need = MemoryModel().need(get_model(WAN_14B), Profile.P3, job().work.size).vram_bytes
    vram = declared_agent("RTX 4090").vram_total
    assert need * SAFETY_MARGIN <= vram < need * UNMEASURED_MARGIN


def test_a_model_no_job_has_measured_runs_under_a_safer_profile_until_one_has() -> None:
    policy = WanfarmPolicy()
    card = declared_agent("RTX 4090", "a")
    [first] = place([card], [job("j1")], policy).assignments
    assert first.profile is Profile.P4  # profile 3 fits only the narrow margin
    policy.observe(finished(job("j0"), Profile.P3, peak_over_estimate=1.0))
    [second] = place([card], [job("j2")], policy).assignments
    assert second.profile is Profile.P3


def test_a_shape_measured_under_one_profile_keeps_the_wide_margin_under_another() -> None:
    # The estimator errs differently per profile: a peak measured under profile 4 says little
    # about profile 3.
    policy = WanfarmPolicy()
    policy.observe(finished(job("j0"), Profile.P4, peak_over_estimate=0.7))
    [placed] = place([declared_agent("RTX 4090", "a")], [job()], policy).assignments
    assert placed.profile is Profile.P4


def test_a_high_peak_under_one_profile_does_not_narrow_another_measured_one() -> None:
    policy = WanfarmPolicy()
    policy.observe(finished(job("j0"), Profile.P3, peak_over_estimate=1.0))
    policy.observe(finished(job("j9", size=(832, 480, 81)), Profile.P5, peak_over_estimate=1.3))
    [placed] = place([declared_agent("RTX 4090", "a")], [job()], policy).assignments
    assert placed.profile is Profile.P3


def test_a_job_that_fits_only_the_narrow_margin_anywhere_is_placed_not_refused() -> None:
    # An 11 GB card holds the 720p 14B with 10% headroom, under no profile with 25%: with no other
    # card in the pool, the job still runs there.
    card = declared_agent("RTX 2080 Ti", "small")
    memory, size = MemoryModel(), job().work.size
    assert (
        memory.choose_profile(get_model(WAN_14B), size, card.vram_total, card.ram_total, Headroom.WIDE)
        is None
    )
    [placed] = place([card], [job()], WanfarmPolicy()).assignments
    assert placed.agent_id == "small"
    assert memory.fits(get_model(WAN_14B), job().work, card, placed.profile)


def test_a_job_that_fits_a_bigger_card_at_the_wide_margin_goes_there_before_it_is_measured() -> None:
    small = declared_agent("RTX 2080 Ti", "small")
    big = declared_agent("RTX 4090", "big", busy_until=NOW + 600)
    decisions = place([small, big], [job()], WanfarmPolicy())
    assert decisions.assignments == ()
    assert "big" in decisions.waiting[0].reason


def test_a_job_that_fits_the_pool_only_at_its_estimate_runs_at_its_estimate() -> None:
    # The controller accepted it by the catalogue's estimate: a margin never keeps it queued for
    # ever. Here the node's RAM holds a 1024 px Qwen image at the estimate, under no margin.
    image = partial(pending_job, model_id="qwen-image", size=(1024, 1024, 1), submitted_at=NOW)
    memory, preset = MemoryModel(), get_model("qwen-image")
    card = declared_agent("RTX 5090", "big", ram_gib=32)
    size, vram, ram = image().work.size, card.vram_total, card.ram_total
    assert memory.choose_profile(preset, size, vram, ram, Headroom.SAFE) is None
    assert memory.choose_profile(preset, size, vram, ram, Headroom.BARE) is not None
    [placed] = place([card], [image()], WanfarmPolicy()).assignments
    assert placed.agent_id == "big"


def test_a_card_that_fits_a_job_only_at_the_safe_margin_still_competes_on_speed() -> None:
    # A 5090 on a node of 16 GB of RAM holds a 720p Kandinsky 5 video with 10% headroom, not 25%;
    # a 3060 with 64 GB holds it with 25%. The wide margin prefers a safer profile, it does not
    # send the job to a card several times slower (family-1003's 3080 Ti nodes, which alone could
    # run its Wan 14B videos, rendered its Kandinsky videos too, and fell hours behind).
    video = partial(pending_job, model_id="kandinsky5-lite-t2v", size=(1248, 720, 81), submitted_at=NOW)
    memory, preset, size = MemoryModel(), get_model("kandinsky5-lite-t2v"), video().work.size
    fast = declared_agent("RTX 5090", "fast", ram_gib=16)
    slow = declared_agent("RTX 3060", "slow", ram_gib=64)
    assert memory.choose_profile(preset, size, fast.vram_total, fast.ram_total, Headroom.WIDE) is None
    assert memory.choose_profile(preset, size, fast.vram_total, fast.ram_total, Headroom.SAFE) is not None
    assert memory.choose_profile(preset, size, slow.vram_total, slow.ram_total, Headroom.WIDE) is not None
    [placed] = place([slow, fast], [video()], WanfarmPolicy()).assignments
    assert placed.agent_id == "fast"
    assert memory.fits(preset, video().work, fast, placed.profile, Headroom.SAFE)
