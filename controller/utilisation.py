"""Busy-agent share over time: a ring buffer of samples, read back as per-minute averages."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

BUCKET_S = 60


@dataclass(frozen=True)
class Sample:
    at: float  # clock seconds
    busy: int
    total: int


class UtilisationLog:
    """The last `keep_s` seconds of samples; thread-safe, so a sampler and the API can share it."""

    def __init__(self, keep_s: float = 3600, every_s: float = 10) -> None:
        self.every_s = every_s
        self._samples: deque[Sample] = deque(maxlen=int(keep_s / every_s) + 1)
        self._lock = threading.Lock()

    def record(self, at: float, busy: int, total: int) -> None:
        with self._lock:
            self._samples.append(Sample(at, busy, total))

    def per_minute(self, start_minute: int, minutes: int) -> list[float | None]:
        """The mean busy share of each minute from `start_minute` (epoch minutes); None without samples."""
        sums = [0.0] * minutes
        counts = [0] * minutes
        with self._lock:
            samples = list(self._samples)
        for sample in samples:
            index = int(sample.at // BUCKET_S) - start_minute
            if 0 <= index < minutes and sample.total > 0:
                sums[index] += sample.busy / sample.total
                counts[index] += 1
        return [round(s / n, 3) if n else None for s, n in zip(sums, counts, strict=True)]
