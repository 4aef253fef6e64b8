"""ETAs for the queue's tail: a virtual schedule of the jobs behind the placed head.

The head of the queue reserves agents (placement_round); the tail is too long to place job by job
every round, yet each of its jobs is owed an ETA. So each tail job, in queue order, takes the agent
that would finish it first, as placement will once its turn comes: every agent comes free when the
head's reservations leave it, and a job takes its learned render seconds on the agent's class. The
agents of a class render alike, so the candidate of a class is its earliest free agent (a heap of
free times per class). Weights are taken as loaded: the tail is deep, and its jobs pile onto the
agents already holding their model. Cost: a heap step and a look at a few classes a job
(_ShapeLanes). Why and the figures: docs/scheduler.md, "ETAs".
"""

from __future__ import annotations

import heapq
import math

from scheduler.wanfarm.job_shapes import JobShape
from scheduler.wanfarm.pool_index import PoolIndex

_Lane = tuple[int, float]  # (class, render seconds on one of its agents)
SHORTLIST = 4  # classes a shape looks at between full looks: the ones that ended its jobs first
FULL_LOOK_EVERY = 16  # jobs of a shape between looks at all its lanes


class QueueEta:
    """The tail's virtual schedule, built from a round's pool once its head is placed."""

    def __init__(self, pool: PoolIndex) -> None:
        now = pool.now
        # Per class, when each of its agents is through the head (a heap: the earliest on top).
        self.free: list[list[float]] = [[] for _ in pool.class_size]
        for index, class_index in enumerate(pool.class_of):
            at = pool.free_at[index]
            self.free[class_index].append(at if at > now else now)
        for heap in self.free:
            heapq.heapify(heap)
        self._shapes: dict[int, _ShapeLanes] = {}  # by id(shape): shapes live as long as the round

    def finish(self, shape: JobShape) -> float:
        """When the next job of the queue, of `shape`, should finish: on the earliest free agent
        of the class that ends it first, which is then busy until that finish."""
        lanes = self._shapes.get(id(shape))
        if lanes is None:
            lanes = self._shapes[id(shape)] = _ShapeLanes(shape)
        free = self.free
        if lanes.until_full:
            lanes.until_full -= 1
            look = lanes.short
        else:
            look = lanes.look_again(free)
        best, best_class = math.inf, -1
        for class_index, render in look:
            end = free[class_index][0] + render
            if end < best:
                best, best_class = end, class_index
        if best_class >= 0:
            heapq.heapreplace(free[best_class], best)
        return best


class _ShapeLanes:
    """The classes a shape can run on, and the few it looks at between full looks. With SHORTLIST
    classes or fewer every look is full (so the schedule is exact); on a pool of many classes a job
    looks at the SHORTLIST that would have ended it first at the shape's last full look, which move
    little over FULL_LOOK_EVERY jobs of the shape."""

    def __init__(self, shape: JobShape) -> None:
        self.all = [(option.class_index, option.render_s) for option in shape.options]
        self.short = self.all
        # Jobs left before the next full look; a shape of SHORTLIST classes or fewer never needs one.
        self.until_full = 0 if len(self.all) > SHORTLIST else -1

    def look_again(self, free: list[list[float]]) -> list[_Lane]:
        """A full look: the SHORTLIST classes that would end a job of the shape first now."""
        self.until_full = FULL_LOOK_EVERY - 1
        self.short = sorted(self.all, key=lambda lane: free[lane[0]][0] + lane[1])[:SHORTLIST]
        return self.short
