"""The capacity bound on the sum of latencies, window by window of arrivals.

For a window of consecutive arrivals, a horizon D and prices l >= 0 on the groups' card-seconds:
every job of the window that finishes within D of arriving rendered inside the window's open
card-seconds, so sum(min(latency, D)) >= sum(min(D, max(alone, least render x (1 + l)))) - sum(l x
open card-seconds). The windows of a split of the trace add up. Prices here are a shape (speed on
the priced groups, none on the others) times a level; proof: docs/scheduler.md, "The latency floor".
"""

from __future__ import annotations

import numpy as np

from scheduler.sim.bounds_windows import Windows, Workload, best_split

HORIZONS = 48  # horizons D, spread geometrically
LEVELS = np.unique(
    np.concatenate([[0.0, 1.0], np.geomspace(0.02, 50.0, 23)])
)  # prices on the fastest priced card


def window_sum(work: Workload, windows: Windows, prices: np.ndarray) -> float:
    """The best lower bound found on the sum of the jobs' latencies; `prices` on each group's
    card-seconds are tried as a shape too."""
    alone = work.alone
    low = max(float(alone.min()), 1e-3)
    high = 2.0 * (float(work.arrivals[-1] - work.arrivals[0]) + float(alone.sum()) / work.counts.sum())
    horizons = np.geomspace(low, max(high, 2.0 * float(alone.max())), HORIZONS)
    edges = np.concatenate([[0.0], horizons])  # a job's term falls in [edges[k], edges[k + 1])
    opened = np.stack(
        [windows.open_seconds(float(horizon)) for horizon in horizons], axis=1
    )  # window x D x group
    runs = windows.runs
    a, b = windows.upper[0], windows.upper[1] + 1
    best = np.full(len(a), -np.inf)
    shapes = [
        np.where(mask, work.speeds / work.speeds[mask].max(), 0.0) for mask in work.priced if mask.any()
    ]
    if prices.max() > 0:
        shapes.append(prices / prices.max())
    for shape in shapes:
        paid = opened @ shape  # window x D: card-seconds' worth at level 1
        for level in LEVELS:
            factors = (1.0 + level * shape)[None, :]
            # Staying on one card, or moving at the moved pace with a set-up again (per lot, by luck).
            least = np.minimum(
                (work.whole * factors).min(axis=1), (work.renders * factors).min(axis=1) + work.setup_s
            )
            terms = np.maximum(alone, least[work.lots] * work.lucks)
            slot = np.searchsorted(edges, terms, side="right") - 1  # HORIZONS: at or past the last D
            where = windows.piece * (HORIZONS + 1) + slot
            count = np.bincount(where, minlength=runs * (HORIZONS + 1)).reshape(runs, HORIZONS + 1)
            total = np.bincount(where, weights=terms, minlength=runs * (HORIZONS + 1)).reshape(
                runs, HORIZONS + 1
            )
            count_p = _prefix(count)
            total_p = _prefix(total)
            counts = count_p[b] - count_p[a]  # window x slot
            totals = total_p[b] - total_p[a]
            # sum(min(D_k, term)): the terms below D_k (slots < k) in full, the rest D_k each.
            below = np.cumsum(totals, axis=1)[:, :-1]  # for D_k, the terms of slots 0..k
            at_least = counts.sum(axis=1)[:, None] - np.cumsum(counts, axis=1)[:, :-1]
            value = below + horizons[None, :] * at_least - level * paid
            best = np.maximum(best, value.max(axis=1))
    values = np.zeros((runs, runs))
    values[windows.upper] = best
    return best_split(values)


def _prefix(values: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0)])
