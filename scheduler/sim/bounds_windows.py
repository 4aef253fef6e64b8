"""The time-windowed count of the latency floor: how many jobs must wait at least x, for each x;
and what the window bounds share (the jobs and groups they read, the windows, the best split).

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
    whole: (
        np.ndarray
    )  # lot x group: render seconds on the group's fastest card before luck, inf where it cannot
    renders: np.ndarray  # the same for a job moved between cards (its decoding at the fastest pace)
    ready: np.ndarray  # lot x group: the earliest a card of the group can render the lot's model
    counts: np.ndarray  # cards per group
    speeds: np.ndarray  # FLOP/s of each group's fastest card: the weight of its card-seconds
    priced: tuple[np.ndarray, ...]  # group masks: the price shapes tried (unpriced groups are free)
    move_s: float  # what moving a job between cards costs it at least: a checkpoint written and read
    setup_s: float  # and a set-up again (before luck)


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
        self.windows = windows
        # Jobs by their alone latency: the candidates at x (alone under x) are a prefix.
        order = np.argsort(work.alone, kind="stable")
        self.alone = work.alone[order]
        self.arrivals = work.arrivals[order]
        self.piece = windows.piece[order]
        levels = _Levels(work)
        self.times = levels.times[work.lots[order]]  # job x level
        self.shapes = [_Shape(work, mask, levels, order) for mask in work.priced if mask.any()]
        self.weights = np.array([np.where(mask, work.speeds, 0.0) for mask in work.priced if mask.any()])

    def extra(self, x: float) -> int:
        """The most jobs, over splits of the trace into windows, that some window proves wait x or more."""
        jobs = int(np.searchsorted(self.alone, x, side="left"))
        runs = self.windows.runs
        upper = self.windows.upper
        budgets = self.windows.open_seconds(x) @ self.weights.T  # window x shape: FLOPs of priced card time
        arrivals = self.arrivals[:jobs]
        # Each job's last level whose groups are ready before its arrival + x (a candidate has one).
        level = np.maximum((self.times[:jobs] < (arrivals + x)[:, None]).sum(axis=1) - 1, 0)
        piece = self.piece[:jobs]
        counts = _prefix(np.bincount(piece, minlength=runs).astype(float))
        best_window = np.zeros((runs, runs))
        for number, shape in enumerate(self.shapes):
            waiting = shape.waiting(x, jobs, level, arrivals, piece, counts, upper, budgets[:, number])
            best_window[upper] = np.maximum(best_window[upper], waiting)
        return int(best_split(best_window))


class _Levels:
    """The times at which each lot's model becomes ready on more groups of cards."""

    def __init__(self, work: Workload) -> None:
        ready = np.where(np.isfinite(work.renders), work.ready, np.inf)
        distinct = [np.unique(row[np.isfinite(row)]) for row in ready]
        self.times = np.full((len(ready), max(len(row) for row in distinct)), np.inf)  # lot x level
        for lot, row in enumerate(distinct):
            self.times[lot, : len(row)] = row


class _Shape:
    """Prices proportional to each priced group's speed, none on the others."""

    def __init__(self, work: Workload, priced: np.ndarray, levels: _Levels, order: np.ndarray) -> None:
        shape = levels.times.shape
        cost = np.full(shape, np.inf)  # lot x level: the cheapest priced group open by then
        free = np.full(shape, np.inf)  # the fastest free group open by then
        free_from = np.full(shape, np.inf)  # when the first free group opened
        fastest = np.full(shape, np.inf)  # the fastest priced group open by then
        for lot, times in enumerate(levels.times):
            renders, ready = work.renders[lot], work.ready[lot]
            for level, time in enumerate(times[np.isfinite(times)]):
                open_ = np.isfinite(renders) & (ready <= time)
                paid, unpaid = open_ & priced, open_ & ~priced
                if paid.any():
                    cost[lot, level] = float((renders * work.speeds)[paid].min())
                    fastest[lot, level] = float(renders[paid].min())
                if unpaid.any():
                    free[lot, level] = float(renders[unpaid].min())
                    free_from[lot, level] = float(ready[unpaid].min())
        lots, lucks = work.lots[order], work.lucks[order][:, None]
        # Per job (by alone latency) and level, with its luck.
        self.cost = cost[lots] * lucks  # FLOPs of priced card time the whole job takes
        self.free = free[lots] * lucks  # its render on the fastest free card open
        self.fastest = fastest[lots] * lucks  # and on the fastest priced one
        self.free_from = free_from[lots]
        finite = self.cost[np.isfinite(self.cost)]
        low, high = (float(finite.min()), float(finite.max())) if len(finite) else (1.0, 1.0)
        self.edges = np.geomspace(low, max(high, low * 1.000001), COST_BINS + 1)
        self.bins = np.clip(np.searchsorted(self.edges, self.cost, side="right") - 1, 0, COST_BINS - 1)
        self.move_s = work.move_s

    def waiting(
        self,
        x: float,
        jobs: int,
        level: np.ndarray,
        arrivals: np.ndarray,
        piece: np.ndarray,
        counts: np.ndarray,
        upper: tuple[np.ndarray, np.ndarray],
        budgets: np.ndarray,
    ) -> np.ndarray:
        """For each window (a, b-1), a <= b-1, how many of the first `jobs` (by alone latency)
        arrived in it and must wait x or more."""
        rows = np.arange(jobs)
        cost = self.cost[rows, level]
        free = self.free[rows, level]
        fastest = self.fastest[rows, level]
        # A job finishing within x renders on free cards only while one is open, at most at the
        # fastest one's pace, and the rest of it on priced cards, one card at a time: a share s on
        # free cards takes s free + (1 - s) fastest + a move (checkpoint) <= x unless s is 0 or 1.
        # That share costs nothing, the rest costs priced card time.
        free_time = np.maximum(arrivals + x - np.maximum(arrivals, self.free_from[rows, level]), 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mixed = np.where(free > fastest, (x - self.move_s - fastest) / (free - fastest), 1.0)
            share = np.where(free <= x, 1.0, np.clip(mixed, 0.0, 1.0))
            free_share = np.where(
                np.isfinite(free), np.minimum(share, np.minimum(1.0, free_time / free)), 0.0
            )
        rest = 1.0 - free_share
        runs = len(counts) - 1
        priced = np.isfinite(cost)
        shares = np.bincount(piece, weights=free_share, minlength=runs)
        slot = piece[priced] * COST_BINS + self.bins[rows, level][priced]
        size = np.bincount(slot, weights=rest[priced], minlength=runs * COST_BINS).reshape(runs, COST_BINS)
        spend = np.bincount(slot, weights=rest[priced] * cost[priced], minlength=runs * COST_BINS)
        spend = spend.reshape(runs, COST_BINS)
        # Prefix sums over pieces, then over cost bins: window (a, b-1) is prefix[b] - prefix[a].
        share_p = _prefix(shares)
        size_p = np.cumsum(_prefix(size), axis=1)
        spend_p = np.cumsum(_prefix(spend), axis=1)
        a, b = upper[0], upper[1] + 1
        windows = np.arange(len(a))
        window_spend = spend_p[b] - spend_p[a]
        window_size = size_p[b] - size_p[a]
        # The fractional knapsack, cheapest first: whole cost bins while the budget lasts, then of
        # the next bin what the budget buys at that bin's lowest cost (never less than it could).
        whole = (window_spend <= budgets[:, None] * (1 + 1e-12)).sum(axis=1)
        last = np.maximum(whole - 1, 0)
        taken = np.where(whole > 0, window_size[windows, last], 0.0)
        spent = np.where(whole > 0, window_spend[windows, last], 0.0)
        partial_bin = np.minimum(whole, COST_BINS - 1)
        left_in_bin = np.maximum(window_size[windows, partial_bin] - taken, 0.0)
        affordable = np.maximum(budgets - spent, 0.0) / self.edges[partial_bin]
        partial = np.where(whole < COST_BINS, np.minimum(left_in_bin, affordable), 0.0)
        fit = share_p[b] - share_p[a] + taken + partial
        return np.maximum(0.0, (counts[b] - counts[a]) - np.floor(fit + SLACK))


def _prefix(values: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0)])
