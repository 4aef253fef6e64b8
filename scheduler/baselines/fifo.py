"""Baseline `fifo`: first come, first served, each job on the first free agent that can run it.

Rule (as plain job queues decide): jobs leave the queue in submit order, priority ignored, and each
goes to the first idle worker able to take it, with no notion of speed or warm weights: Celery and
RQ workers pull the oldest message; ComfyUI's PromptQueue hands out prompts by submission number.
A job no free agent can run is skipped, not blocking the ones behind it.
"""

from __future__ import annotations

from models.catalogue import ModelPreset
from scheduler.baselines.common import Baseline, Candidate, place_in_submit_order
from scheduler.snapshot import Decisions, PendingJob, Snapshot


class FifoPolicy(Baseline):
    """Submit order; first feasible free agent in agent-id order."""

    name = "fifo"

    def place(self, snapshot: Snapshot) -> Decisions:
        """Each job in submit order takes the first idle agent that can run it, if any."""
        return place_in_submit_order(snapshot, self.catalogue, "fifo", _first_free)


def _first_free(preset: ModelPreset, job: PendingJob, candidates: list[Candidate]) -> tuple[Candidate, str]:
    return candidates[0], "first free"  # candidates come in agent-id order
