"""Progress of one job as its steps pass: `(step, total, phase)`, and how a job is cancelled."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Phase(StrEnum):
    FETCHING = "fetching"  # weights into the local cache
    LOADING = "loading"  # pipeline into memory under the profile
    DENOISING = "denoising"
    DECODING = "decoding"
    ENCODING = "encoding"  # post-processing and writing the file
    DONE = "done"


@dataclass(frozen=True)
class Progress:
    step: int
    total: int
    phase: Phase


class Cancelled(Exception):
    """Raised by a progress callback to stop a job between steps."""


class Preempted(Exception):
    """Raised by a progress callback to stop a job at a step boundary, once its denoising state is
    checkpointed, so that another job takes the GPU; the job resumes later from that state."""


ProgressFn = Callable[[Progress], None]


def ignore_progress(_: Progress) -> None:
    """A progress callback for callers that do not watch."""
