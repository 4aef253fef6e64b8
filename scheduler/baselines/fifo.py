"""Baseline `fifo`: first come, first served, each job on the first free agent that can run it.

Rule (as plain job queues decide): jobs leave the queue in submit order, priority ignored, and each
goes to the first idle worker able to take it, with no notion of speed or warm weights: Celery and
RQ workers pull the oldest message; ComfyUI's PromptQueue hands out prompts by submission number.
A job no free agent can run is skipped, not blocking the ones behind it.
"""

from __future__ import annotations

from collections.abc import Callable

from models.catalogue import ModelPreset, get_model
from scheduler.baselines.common import Candidate, place_in_submit_order
from scheduler.snapshot import Decisions, Observation, PendingJob, Snapshot


class FifoPolicy:
    """Submit order; first feasible free agent in agent-id order."""

    name = "fifo"

    def __init__(self, presets: Callable[[str], ModelPreset] = get_model) -> None:
        self.presets = presets

    def observe(self, observation: Observation) -> None:
        """FIFO does not learn."""

    def place(self, snapshot: Snapshot) -> Decisions:
        """Each job in submit order takes the first idle agent that can run it, if any."""
        return place_in_submit_order(snapshot, self.presets, "fifo", _first_free)


def _first_free(preset: ModelPreset, job: PendingJob, candidates: list[Candidate]) -> tuple[Candidate, str]:
    return candidates[0], "first free"  # candidates come in agent-id order
