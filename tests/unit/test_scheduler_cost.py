"""The rough cost model: what makes a job take longer, in the direction a user would expect."""

from __future__ import annotations

from models.catalogue import get_model
from models.profiles import SPEED_ORDER, Profile
from models.work import WorkSize
from scheduler.cost import job_seconds, load_seconds, render_seconds
from tests.declared_agents import declared_agent

WAN_14B = get_model("t2v")


def work(steps: int = 30, frames: int = 81, batch: int = 1) -> WorkSize:
    return WorkSize(WAN_14B.id, 1280, 720, frames, steps, batch)


def test_loading_is_free_when_hot_and_faster_when_cached_than_downloaded() -> None:
    hot = declared_agent("RTX 4090", hot_model=WAN_14B.id)
    cached = declared_agent("RTX 4090", cached_models=frozenset({WAN_14B.id}))
    cold = declared_agent("RTX 4090")
    assert load_seconds(WAN_14B, hot) == 0
    assert 0 < load_seconds(WAN_14B, cached) < load_seconds(WAN_14B, cold)
    assert load_seconds(WAN_14B, cold) == WAN_14B.weight_bytes / 100e6


def test_render_time_is_linear_in_steps_and_shorter_on_a_faster_card() -> None:
    agent, faster = declared_agent("RTX 4090"), declared_agent("H100 SXM")
    twenty, forty = work(steps=20), work(steps=40)
    assert render_seconds(WAN_14B, forty, agent) == 2 * render_seconds(WAN_14B, twenty, agent)
    assert render_seconds(WAN_14B, twenty, faster) < render_seconds(WAN_14B, twenty, agent)


def test_more_frames_or_a_bigger_batch_take_longer() -> None:
    agent = declared_agent("RTX 4090")
    assert render_seconds(WAN_14B, work(frames=121), agent) > render_seconds(WAN_14B, work(frames=81), agent)
    assert render_seconds(WAN_14B, work(batch=2), agent) > render_seconds(WAN_14B, work(), agent)


def test_slower_profiles_take_longer() -> None:
    agent = declared_agent("RTX 4090", hot_model=WAN_14B.id)
    times = [job_seconds(WAN_14B, work(), agent, profile) for profile in SPEED_ORDER]
    assert times == sorted(times)
    assert job_seconds(WAN_14B, work(), agent, Profile.P5) == 2 * job_seconds(
        WAN_14B, work(), agent, Profile.P1
    )


def test_a_720p_wan_14b_job_on_an_h100_takes_minutes_not_seconds_or_days() -> None:
    agent = declared_agent("H100 SXM", hot_model=WAN_14B.id)
    assert 60 < job_seconds(WAN_14B, work(), agent, Profile.P1) < 6 * 3600
