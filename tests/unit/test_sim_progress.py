"""The simulator shows a running job's progress as the job would report it: the engine skips an
agent until `Attempt.progress_due`, so that time must never come after the reported step moves."""

from __future__ import annotations

import random

from models.work import WorkSize
from scheduler.preemption import progress_moved
from scheduler.sim.cluster import Attempt, SimJob
from scheduler.sim.formats import TraceJob
from scheduler.sim.truth import JobNoise, RenderPhases


def _attempt(rng: random.Random) -> Attempt:
    steps = rng.choice((1, 4, 8, 20, 30, 50))
    trace = TraceJob("j", 0.0, WorkSize("wan2.1-t2v-1.3b", 832, 480, 81, steps), 50, "ann")
    phases = RenderPhases(rng.uniform(0, 5), rng.choice((0.0, rng.uniform(0.01, 40))), rng.uniform(0, 9))
    first = rng.randrange(steps)
    attempt = object.__new__(Attempt)  # only the fields step_at and progress_due read
    attempt.job = SimJob(trace, 0, JobNoise())
    attempt.start, attempt.load_s, attempt.phases, attempt.first_step = (
        rng.uniform(0, 1e5),
        rng.uniform(0, 60),
        phases,
        first,
    )
    return attempt


def test_the_shown_step_cannot_move_before_its_progress_is_due() -> None:
    rng = random.Random(3)
    for _ in range(300):
        attempt = _attempt(rng)
        total = attempt.job.trace.work.steps
        end = attempt.start + attempt.load_s + attempt.phases.seconds(total - attempt.first_step)
        shown = 0  # a fresh view shows no progress
        for now in sorted(rng.uniform(attempt.start, end + 10) for _ in range(60)):
            due = attempt.progress_due(shown)
            step, _ = attempt.step_at(now)
            if now < due:
                assert not progress_moved(shown, step, total)
            elif progress_moved(shown, step, total):
                shown = step
