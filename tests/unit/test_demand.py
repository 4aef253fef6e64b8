"""Demand per GPU class from a placement's snapshot and decisions, and which idle agents to let go
(scheduler.demand, pure): the figures a user sees in /v1/autoscale and what Ray's autoscaler is asked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from controller.gpu_classes import GpuClassesError, load_gpu_classes
from models.profiles import Profile
from scheduler.catalogue_lookup import CatalogueLookup
from scheduler.demand import (
    ClassDemand,
    GpuClass,
    ScalingRules,
    class_demand,
    class_resource,
    class_view,
    class_waits,
    releases,
)
from scheduler.snapshot import Assignment, Decisions, PendingJob, Snapshot, Waiting
from tests.job_records import WAN_14B, pending_job

NOW = 1_000.0
SMALL = GpuClass("gpu12", "RTX 3060", max_gpus=3, ram_gb=16)
BIG = GpuClass("gpu24", "RTX 4090", max_gpus=2, ram_gb=32, idle_release_s=60, hot_release_s=600)
RULES = ScalingRules((SMALL, BIG), scale_up_s=120)
TINY = "wan-tiny"
TWICE = (
    '{"classes": [{"name": "a", "gpu": "RTX 3060", "max_gpus": 1},'
    ' {"name": "a", "gpu": "RTX 4090", "max_gpus": 1}]}'
)


def demand(
    snapshot: Snapshot,
    decisions: Decisions | None = None,
    classes: Mapping[str, str] | None = None,
    drained: Mapping[str, int] | None = None,
) -> dict[str, ClassDemand]:
    rows = class_demand(snapshot, decisions or Decisions(), classes or {}, RULES, CatalogueLookup(), drained)
    return {row.gpu_class: row for row in rows}


def tiny_job(job_id: str) -> PendingJob:
    return pending_job(job_id, TINY, size=(64, 64, 9), steps=4)


def test_a_job_asks_the_cheapest_class_that_can_run_it_and_an_empty_queue_asks_nothing() -> None:
    # Wan 14B at 720p needs more RAM than a 16 GB node has at any profile: only the 24 GB class runs it.
    pending = (pending_job("big1", WAN_14B), tiny_job("tiny1"))
    rows = demand(Snapshot(NOW, (), pending))
    assert (rows["gpu12"].waiting, rows["gpu12"].wanted) == (1, 1)
    assert (rows["gpu24"].waiting, rows["gpu24"].wanted) == (1, 1)
    empty = demand(Snapshot(NOW, (), ()))
    assert [row.wanted for row in empty.values()] == [0, 0]


def test_a_class_is_asked_for_no_more_than_its_maximum() -> None:
    pending = tuple(pending_job(f"big{i}", WAN_14B) for i in range(5))
    rows = demand(Snapshot(NOW, (), pending))
    assert (rows["gpu24"].waiting, rows["gpu24"].wanted, rows["gpu24"].max_gpus) == (5, 2, 2)
    assert rows["gpu12"].wanted == 0  # the cheaper class cannot run them: it stays at zero


def test_a_job_an_agent_up_now_finishes_soon_asks_for_nothing_one_that_would_wait_long_asks() -> None:
    busy = replace(class_view(BIG), agent_id="a1", busy_until=NOW + 30)
    pending = (pending_job("soon", WAN_14B), pending_job("late", WAN_14B))
    waits = (Waiting("soon", "behind a1", NOW + 100), Waiting("late", "behind soon", NOW + 400))
    rows = demand(Snapshot(NOW, (busy,), pending), Decisions(waiting=waits), classes={"a1": "gpu24"})
    # Its busy agent stays asked for; only the job past scale_up_s asks for one more GPU.
    assert (rows["gpu24"].busy, rows["gpu24"].waiting, rows["gpu24"].wanted) == (1, 1, 2)


def test_an_assigned_job_counts_its_agent_busy_and_asks_for_nothing_more() -> None:
    idle = replace(class_view(SMALL), agent_id="a1")
    other = replace(class_view(SMALL), agent_id="a2")
    assignment = Assignment("t1", "a1", Profile.P4, NOW, NOW + 10, "free")
    rows = demand(
        Snapshot(NOW, (idle, other), (tiny_job("t1"),)),
        Decisions(assignments=(assignment,)),
        classes={"a1": "gpu12", "a2": "gpu12"},
    )
    assert (rows["gpu12"].busy, rows["gpu12"].idle, rows["gpu12"].waiting, rows["gpu12"].wanted) == (
        1,
        1,
        0,
        1,
    )


def test_a_drained_nodes_gpus_are_asked_for_on_top_only_while_jobs_ask_its_class() -> None:
    asking = demand(Snapshot(NOW, (), (pending_job("big", WAN_14B),)), drained={"gpu24": 1})
    assert asking["gpu24"].wanted == 2  # else the idle drained node would seem to serve the job
    quiet = demand(Snapshot(NOW, (), ()), drained={"gpu24": 1})
    assert quiet["gpu24"].wanted == 0  # and nothing keeps it once nothing asks


def test_an_agent_idle_past_its_timeout_is_released_longer_when_its_hot_model_is_asked_for() -> None:
    cold = replace(class_view(BIG), agent_id="cold", hot_model="wan-tiny")
    hot = replace(class_view(BIG), agent_id="hot", hot_model=WAN_14B)
    fixed = replace(class_view(BIG), agent_id="fixed")  # a node of no class: never released
    idle_since = {"cold": NOW - 61, "hot": NOW - 61, "fixed": NOW - 10_000}
    starts = [(WAN_14B, NOW - 100), (WAN_14B, NOW - 50), ("wan-tiny", NOW - 5_000)]
    quiet = demand(Snapshot(NOW, (), ()))
    got = releases(
        (cold, hot, fixed), {"cold": "gpu24", "hot": "gpu24"}, idle_since, starts, quiet.values(), RULES, NOW
    )
    assert [(r.agent_id, r.gpu_class) for r in got] == [("cold", "gpu24")]
    later = releases((hot,), {"hot": "gpu24"}, {"hot": NOW - 601}, starts, quiet.values(), RULES, NOW)
    assert [r.agent_id for r in later] == ["hot"] and "hot and asked for lately" in later[0].reason


def test_no_agent_of_a_class_its_queue_asks_for_is_released() -> None:
    idle = replace(class_view(BIG), agent_id="a1")
    asked = demand(Snapshot(NOW, (), (pending_job("big", WAN_14B),)))
    assert releases((idle,), {"a1": "gpu24"}, {"a1": NOW - 1_000}, [], asked.values(), RULES, NOW) == ()


def test_a_class_names_its_ray_resource_and_refuses_what_a_worker_group_cannot_be() -> None:
    assert class_resource("gpu-24") == "wanfarm_class_gpu_24" == GpuClass("gpu-24", "RTX 4090", 1).resource
    with pytest.raises(ValueError, match="lower-case"):
        GpuClass("GPU_24", "RTX 4090", 1)
    with pytest.raises(LookupError, match="RTX 9999"):
        GpuClass("gpu24", "RTX 9999", 1)
    with pytest.raises(ValueError, match="idle_release_s <= hot_release_s"):
        GpuClass("gpu24", "RTX 4090", 1, idle_release_s=600, hot_release_s=60)


def test_the_classes_file_loads_and_a_bad_one_is_refused_naming_the_problem(tmp_path: Path) -> None:
    good = tmp_path / "classes.json"
    good.write_text(
        '{"classes": [{"name": "gpu12", "gpu": "RTX 3060", "max_gpus": 4, "ram_gb": 32},'
        ' {"name": "gpu24", "gpu": "RTX 4090", "max_gpus": 2}], "scale_up_s": 90}'
    )
    rules = load_gpu_classes(good)
    assert [c.name for c in rules.classes] == ["gpu12", "gpu24"] and rules.scale_up_s == 90
    assert rules.classes[0].ram_gb == 32 and rules.classes[1].idle_release_s == 300
    for text, problem in [
        ("{", "not JSON"),
        ('{"classes": []}', "classes"),
        ('{"classes": [{"name": "a", "gpu": "RTX 3060"}]}', "max_gpus"),
        ('{"classes": [{"name": "a", "gpu": "RTX 3060", "max_gpus": 1, "cpu": 2}]}', "cpu"),
        ('{"classes": [{"name": "a", "gpu": "Voodoo 2", "max_gpus": 1}]}', "Voodoo 2"),
        (TWICE, "twice"),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(GpuClassesError, match=problem) as refused:
            load_gpu_classes(bad)
        assert str(bad) in str(refused.value)
    with pytest.raises(GpuClassesError, match="cannot read"):
        load_gpu_classes(tmp_path / "missing.json")


def test_with_no_agent_up_a_job_says_which_classs_new_node_it_waits_for() -> None:
    waits = class_waits(
        (pending_job("big", WAN_14B), pending_job("odd", "no-such-model")), RULES, CatalogueLookup()
    )
    assert [w.reason for w in waits] == [
        "waiting for a new node of GPU class gpu24 (RTX 4090): the autoscaler adds it",
        "no agent is up, and no GPU class of this farm can run it",
    ]
