"""A generated audio track, as a pipeline that renders sound with its video returns it (LTX-2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Soundtrack:
    """Float samples in [-1, 1], shaped (channels, samples), at `rate` Hz."""

    samples: np.ndarray
    rate: int

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def seconds(self) -> float:
        return self.samples.shape[-1] / self.rate
