"""The farm's recent throughput and utilisation as per-minute series, for the dashboard."""

from __future__ import annotations

from controller.schemas import StatsOut
from controller.store import JobStore
from controller.utilisation import BUCKET_S, UtilisationLog


def window_stats(store: JobStore, utilisation: UtilisationLog | None, window_s: int, now: float) -> StatsOut:
    """Jobs finished and the busy share of agents in each whole minute of the `window_s` seconds up to
    `now`, oldest first; utilisation is None where nothing was sampled (or no log is kept)."""
    minutes = window_s // BUCKET_S
    start_minute = int(now // BUCKET_S) - minutes + 1
    counts = store.finished_per_minute(start_minute * BUCKET_S, BUCKET_S)
    busy = utilisation.per_minute(start_minute, minutes) if utilisation else [None] * minutes
    return StatsOut(
        window_s=minutes * BUCKET_S,
        bucket_s=BUCKET_S,
        start=float(start_minute * BUCKET_S),
        finished=[counts.get(start_minute + i, 0) for i in range(minutes)],
        utilisation=busy,
    )
