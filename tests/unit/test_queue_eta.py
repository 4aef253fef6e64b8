"""The ETAs of the queue's tail: a virtual schedule of its jobs, in queue order, each on the agent
that would finish it first, after the head's reservations."""

from __future__ import annotations

import pytest

from models.catalogue import get_model
from models.profiles import Profile
from models.work import WorkSize
from scheduler.catalogue_lookup import CatalogueLookup
from scheduler.snapshot import PendingJob
from scheduler.wanfarm.fair_share import QueueOrder
from scheduler.wanfarm.job_shapes import ClassOption, JobShape, RoundShapes
from scheduler.wanfarm.learning import MemoryModel, SpeedModel
from scheduler.wanfarm.placement_round import PlacementRound
from scheduler.wanfarm.pool_index import PoolIndex
from scheduler.wanfarm.queue_eta import QueueEta
from tests.declared_agents import declared_agent

NOW = 1_000.0
MODEL = "wan2.1-t2v-1.3b"


def _shape(pool: PoolIndex, render_s: dict[str, float]) -> JobShape:
    # A shape by hand: the render seconds on each named agent's class, fastest first as RoundShapes has them.
    options = sorted(
        (ClassOption(pool.class_of[pool.position[agent]], Profile.P1, s) for agent, s in render_s.items()),
        key=lambda option: option.render_s,
    )
    preset = get_model(MODEL)
    return JobShape(preset, preset.weight_bytes, tuple(options), sum(render_s.values()) / len(render_s), None)


def test_each_job_takes_the_agent_that_ends_it_first_as_a_hand_made_schedule_does() -> None:
    fast = declared_agent("RTX 4090", "fast", busy_until=NOW + 210)
    slow = declared_agent("RTX 3060", "slow")
    pool = PoolIndex((fast, slow), NOW)
    clip = _shape(pool, {"fast": 100.0, "slow": 250.0})
    eta = QueueEta(pool)
    # slow 250 (fast would end at 310); fast 310, 410; slow 500 (before fast's 510); fast 510.
    assert [eta.finish(clip) - NOW for _ in range(5)] == [250, 310, 410, 500, 510]


def test_a_class_of_many_agents_renders_side_by_side() -> None:
    agents = tuple(declared_agent("RTX 4090", f"gpu{i}") for i in range(3))
    pool = PoolIndex(agents, NOW)
    assert len(pool.classes) == 1
    clip = _shape(pool, {"gpu0": 100.0})
    eta = QueueEta(pool)
    assert [eta.finish(clip) - NOW for _ in range(7)] == [100, 100, 100, 200, 200, 200, 300]


def test_a_job_only_some_classes_run_waits_for_them_while_others_use_the_rest() -> None:
    big = declared_agent("RTX 4090", "big", busy_until=NOW + 50)
    small = declared_agent("RTX 3060", "small")
    pool = PoolIndex((big, small), NOW)
    only_big = _shape(pool, {"big": 300.0})
    either = _shape(pool, {"big": 40.0, "small": 90.0})
    eta = QueueEta(pool)
    # The big-only job takes "big" until 350; the next job ends sooner on "small" (90) than after it.
    assert [eta.finish(only_big) - NOW, eta.finish(either) - NOW, eta.finish(either) - NOW] == [350, 90, 180]


def test_the_tail_is_scheduled_after_the_head_on_the_pool_it_leaves() -> None:
    agent = declared_agent("RTX 4090", "gpu0")
    pool = PoolIndex((agent,), NOW)
    catalogue = CatalogueLookup(get_model)
    shapes = RoundShapes(pool.classes, catalogue, SpeedModel(), MemoryModel(catalogue))
    jobs = [PendingJob(f"j{i}", WorkSize(MODEL, 832, 480, 33, 20), 50, "ann", NOW - 10 + i) for i in range(4)]
    order = QueueOrder(head=tuple(jobs[:1]), tail=tuple(jobs[1:]))
    render = _render_s(shapes, jobs[0])

    decisions = PlacementRound(pool, shapes).run(order)

    [started] = decisions.assignments
    etas = {wait.job_id: wait.eta for wait in decisions.waiting}
    # The head's job loads the weights and renders; the tail's pile onto the agent holding them hot.
    assert [etas[f"j{i}"] for i in (1, 2, 3)] == pytest.approx(
        [started.est_finish + k * render for k in (1, 2, 3)]
    )


def _render_s(shapes: RoundShapes, job: PendingJob) -> float:
    shape = shapes.shape(job)
    assert shape is not None
    [option] = shape.options
    return option.render_s
