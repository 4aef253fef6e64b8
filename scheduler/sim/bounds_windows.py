"""The time-windowed part of the latency floor: how many jobs must wait at least x, for each x.

For a threshold x and a run of consecutive arrivals, the jobs of the run that finish within x of
their arrival render inside [the run's first arrival, its last arrival + x), when the cards have
only so many seconds; the pool cannot finish more of them than fit (a fractional knapsack with a
price on each card's seconds), so the rest wait x or more. Summed over runs that split the trace,
that counts jobs no policy can finish within x; integrated over x it bounds the sum of latencies,
and where more than a twentieth must wait x, the p95 is x or more. Proof: docs/scheduler.md,
"The latency floor".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RUNS = 48  # the trace is cut at this many arrival quantiles; windows are runs of these pieces
THRESHOLDS = 96  # thresholds x, spread geometrically from the least alone latency
COST_BINS = 64  # a job's cost is rounded down to one of these (a bound stays a bound)
BISECTIONS = 12  # refinements of the p95 between two thresholds
SLACK = 1e-6  # a count of jobs is whole: floor(fit + SLACK), rounding error never counts a job


@dataclass(frozen=True)
class Workload:
    """What the windowed bound reads, per job in arrival order and per group of cards."""

    arrivals: np.ndarray  # seconds, non-decreasing
    alone: np.ndarray  # each job's latency with the pool to itself: no policy does better
    lucks: np.ndarray  # each job's render luck
    lots: np.ndarray  # each job's row of `renders`
    renders: np.ndarray  # lot x group: seconds on the group's fastest card before luck, inf where it cannot
    ready: np.ndarray  # lot x group: the earliest a card of the group can render the lot's model
    counts: np.ndarray  # cards per group
    speeds: np.ndarray  # FLOP/s of each group's fastest card: the weight of its card-seconds
    priced: tuple[np.ndarray, ...]  # group masks: the price shapes tried (unpriced groups are free)
    move_s: float  # what moving a job between cards costs it at least: a checkpoint written and read


@dataclass(frozen=True)
class WindowFloor:
    sum_s: float  # a lower bound on the sum of the jobs' latencies
    p95_s: float  # a lower bound on their p95 (interpolated as scheduler.sim.metrics.percentile)


def window_floor(work: Workload, windows: Windows) -> WindowFloor:
    """The sum and p95 bounds from counting, at each threshold, the jobs that must wait that long."""
    counter = _Counter(work, windows)
    alone = np.sort(work.alone)
    jobs = len(alone)
    if jobs == 0:
        return WindowFloor(0.0, 0.0)
    low = max(float(alone[0]), 1e-3)
    high = 2.0 * (float(work.arrivals[-1] - work.arrivals[0]) + float(alone.sum()) / work.counts.sum())
    high = max(high, 2.0 * float(alone[-1]))
    thresholds = np.geomspace(low, high, THRESHOLDS)
    slow = np.array([_alone_at_least(alone, x) + counter.extra(x) for x in thresholds])
    # Between two thresholds the count of jobs waiting at least x only falls, so each piece of the
    # integral takes its right end's count, or the jobs alone that long where that is more.
    total = 0.0
    previous = 0.0
    for x, count in zip(thresholds, slow, strict=True):
        total += _integral_at_least(alone, previous, float(x), int(count))
        previous = float(x)
    total += float(np.maximum(alone - previous, 0.0).sum())
    return WindowFloor(total, _p95(alone, thresholds, slow, counter))


def _p95(alone: np.ndarray, thresholds: np.ndarray, slow: np.ndarray, counter: _Counter) -> float:
    # The interpolated p95 is at least the value of rank floor((n - 1) 0.95) from the bottom: x or
    # more once that many jobs from the top wait x or more.
    jobs = len(alone)
    need = jobs - math.floor((jobs - 1) * 0.95)
    passing = np.nonzero(slow >= need)[0]
    if len(passing) == 0:
        return 0.0
    index = int(passing[-1])
    best = float(thresholds[index])
    if index + 1 < len(thresholds):
        low, high = best, float(thresholds[index + 1])
        for _ in range(BISECTIONS):
            middle = (low + high) / 2
            if _alone_at_least(alone, middle) + counter.extra(middle) >= need:
                low = best = middle
            else:
                high = middle
    return best


def _alone_at_least(alone: np.ndarray, x: float) -> int:
    return len(alone) - int(np.searchsorted(alone, x, side="left"))


def _integral_at_least(alone: np.ndarray, low: float, high: float, count: int) -> float:
    """The integral over (low, high] of max(count, the jobs whose alone latency is at least x)."""
    # Above `count`, the jobs alone that long are those ranked past the `count` longest.
    rest = alone[: max(0, len(alone) - count)]
    start = int(np.searchsorted(rest, low, side="right"))
    stop = int(np.searchsorted(rest, high, side="right"))
    within = float(rest[start:stop].sum()) - low * (stop - start)
    beyond = (high - low) * (len(rest) - stop)
    return count * (high - low) + within + beyond


class Windows:
    """The trace cut into pieces of consecutive arrivals; a window is a run of pieces."""

    def __init__(self, work: Workload) -> None:
        jobs = len(work.arrivals)
        cuts = np.unique(np.linspace(0, jobs, RUNS + 1).round().astype(int))
        self.runs = runs = len(cuts) - 1
        self.piece = np.searchsorted(cuts, np.arange(jobs), side="right") - 1  # each job's piece
        self.upper = np.triu_indices(runs)  # window (a, b-1): pieces a..b-1, a <= b-1
        firsts = work.arrivals[cuts[:-1]]
        self.lasts = work.arrivals[cuts[1:] - 1][self.upper[1]]  # per window
        # A window's jobs render after its first arrival and after their model is ready on the card.
        piece_ready = np.minimum.reduceat(work.ready[work.lots], cuts[:-1], axis=0)  # piece x group
        starts = np.empty((runs, runs, len(work.counts)))
        for a in range(runs):
            starts[a, a:] = np.maximum(firsts[a], np.minimum.accumulate(piece_ready[a:], axis=0))
        self.starts = starts[self.upper]  # window x group
        self.counts = work.counts

    def open_seconds(self, x: float) -> np.ndarray:
        """window x group: card-seconds each group has for the window's jobs that finish within x
        of arriving (they render before the window's last arrival + x)."""
        return np.maximum(self.lasts[:, None] + x - self.starts, 0.0) * self.counts[None, :]


def best_split(values: np.ndarray) -> float:
    """The best sum over splits of the pieces into windows, values[a, b-1] a window's."""
    runs = len(values)
    best = np.zeros(runs + 1)
    for end in range(1, runs + 1):
        best[end] = float(np.max(best[:end] + values[:end, end - 1]))
    return float(best[runs])


class _Counter:
    """Counts, for a threshold x, the jobs beyond those alone that long that must wait x or more."""

    def __init__(self, work: Workload, windows: Windows) -> None:
        self.work = work
        self.windows = windows
        self.runs = windows.runs
        self.piece = windows.piece
        self.levels = _Levels(work)
        self.shapes = [_Shape(work, mask, self.levels) for mask in work.priced if mask.any()]
        self.weights = np.array([np.where(mask, work.speeds, 0.0) for mask in work.priced if mask.any()])

    def extra(self, x: float) -> int:
        """The most jobs, over splits of the trace into windows, that some window proves wait x or more."""
        candidates = np.nonzero(self.work.alone < x)[0]
        runs = self.runs
        upper = self.windows.upper
        budgets = self.windows.open_seconds(x) @ self.weights.T  # window x shape: FLOPs of priced card time
        available = self.levels.available(candidates, x)
        best_window = np.zeros((runs, runs))
        for number, shape in enumerate(self.shapes):
            waiting = shape.waiting(x, candidates, available, self.piece, upper, budgets[:, number])
            best_window[upper] = np.maximum(best_window[upper], waiting)
        return int(best_split(best_window))


class _Levels:
    """The times at which each lot's model becomes ready on more groups of cards."""

    def __init__(self, work: Workload) -> None:
        ready = np.where(np.isfinite(work.renders), work.ready, np.inf)
        self.times = np.sort(ready, axis=1)  # lot x group: level k opens the k+1 groups ready first
        self.work = work

    def available(self, jobs: np.ndarray, x: float) -> np.ndarray:
        """For each job, the last level whose groups are ready before its arrival + x (-1: none)."""
        work = self.work
        times = self.times[work.lots[jobs]]
        return (times < (work.arrivals[jobs] + x)[:, None]).sum(axis=1) - 1


class _Shape:
    """Prices proportional to each priced group's speed, none on the others."""

    def __init__(self, work: Workload, priced: np.ndarray, levels: _Levels) -> None:
        lots, groups = work.renders.shape
        order = np.argsort(np.where(np.isfinite(work.renders), work.ready, np.inf), axis=1, kind="stable")
        cost = np.full((lots, groups), np.inf)  # lot x level: the cheapest priced group open by then
        free = np.full((lots, groups), np.inf)  # the fastest free group open by then
        free_from = np.full((lots, groups), np.inf)  # when the first free group opened
        fastest = np.full((lots, groups), np.inf)  # the fastest priced group open by then
        for lot in range(lots):
            opened = order[lot]
            renders = work.renders[lot, opened]
            readies = work.ready[lot, opened]
            pricing = priced[opened]
            cost[lot] = np.minimum.accumulate(np.where(pricing, renders * work.speeds[opened], np.inf))
            free[lot] = np.minimum.accumulate(np.where(pricing, np.inf, renders))
            fastest[lot] = np.minimum.accumulate(np.where(pricing, renders, np.inf))
            free_from[lot] = np.minimum.accumulate(np.where(pricing | ~np.isfinite(renders), np.inf, readies))
        self.cost, self.free, self.free_from, self.fastest = cost, free, free_from, fastest
        self.move_s = work.move_s
        self.work = work
        finite = cost[np.isfinite(cost)] * work.lucks.min()
        top = cost[np.isfinite(cost)] * work.lucks.max()
        low, high = (float(finite.min()), float(top.max())) if len(finite) else (1.0, 1.0)
        self.edges = np.geomspace(low, max(high, low * 1.000001), COST_BINS + 1)

    def waiting(
        self,
        x: float,
        jobs: np.ndarray,
        available: np.ndarray,
        piece: np.ndarray,
        upper: tuple[np.ndarray, np.ndarray],
        budgets: np.ndarray,
    ) -> np.ndarray:
        """For each window (a, b-1), a <= b-1, how many of its candidate jobs must wait x or more."""
        work = self.work
        lots, lucks, arrivals = work.lots[jobs], work.lucks[jobs], work.arrivals[jobs]
        level = np.maximum(available, 0)
        cost = self.cost[lots, level] * lucks  # FLOPs of priced card time a whole job takes
        free = self.free[lots, level] * lucks  # its render on the fastest free card open in time
        fastest = self.fastest[lots, level] * lucks  # and on the fastest priced one
        # A job finishing within x renders on free cards only while one is open, at most at the
        # fastest one's pace, and the rest of it on priced cards, one card at a time: a share s on
        # free cards takes s free + (1 - s) fastest + a move (checkpoint) <= x unless s is 0 or 1.
        # That share costs nothing, the rest costs priced card time.
        free_time = np.maximum(arrivals + x - np.maximum(arrivals, self.free_from[lots, level]), 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mixed = np.where(free > fastest, (x - self.move_s - fastest) / (free - fastest), 1.0)
            share = np.where(free <= x, 1.0, np.clip(mixed, 0.0, 1.0))
            free_share = np.where(
                np.isfinite(free), np.minimum(share, np.minimum(1.0, free_time / free)), 0.0
            )
        rest = 1.0 - free_share
        where = piece[jobs]
        runs = len(piece) and int(piece[-1]) + 1
        priced = np.isfinite(cost)
        counts = np.bincount(where, minlength=runs).astype(float)
        shares = np.bincount(where, weights=free_share, minlength=runs)
        cost_bin = np.clip(np.searchsorted(self.edges, cost[priced], side="right") - 1, 0, COST_BINS - 1)
        slot = where[priced] * COST_BINS + cost_bin
        size = np.bincount(slot, weights=rest[priced], minlength=runs * COST_BINS).reshape(runs, COST_BINS)
        spend = np.bincount(slot, weights=rest[priced] * cost[priced], minlength=runs * COST_BINS)
        spend = spend.reshape(runs, COST_BINS)
        # Prefix sums over pieces, then over cost bins: window (a, b-1) is prefix[b] - prefix[a].
        count_p, share_p = _prefix(counts), _prefix(shares)
        size_p = np.cumsum(_prefix(size), axis=1)
        spend_p = np.cumsum(_prefix(spend), axis=1)
        a, b = upper[0], upper[1] + 1
        rows = np.arange(len(a))
        window_spend = spend_p[b] - spend_p[a]
        window_size = size_p[b] - size_p[a]
        # The fractional knapsack, cheapest first: whole cost bins while the budget lasts, then of
        # the next bin what the budget buys at that bin's lowest cost (never less than it could).
        whole = (window_spend <= budgets[:, None] * (1 + 1e-12)).sum(axis=1)
        last = np.maximum(whole - 1, 0)
        taken = np.where(whole > 0, window_size[rows, last], 0.0)
        spent = np.where(whole > 0, window_spend[rows, last], 0.0)
        partial_bin = np.minimum(whole, COST_BINS - 1)
        left_in_bin = np.maximum(window_size[rows, partial_bin] - taken, 0.0)
        affordable = np.maximum(budgets - spent, 0.0) / self.edges[partial_bin]
        partial = np.where(whole < COST_BINS, np.minimum(left_in_bin, affordable), 0.0)
        fit = share_p[b] - share_p[a] + taken + partial
        return np.maximum(0.0, (count_p[b] - count_p[a]) - np.floor(fit + SLACK))


def _prefix(values: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0)])
