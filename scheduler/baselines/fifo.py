"""Baseline `fifo`: first come, first served, each job on the first free agent that can run it.

Rule (as plain job queues decide): jobs leave the queue in submit order, priority ignored, and each
goes to the first idle worker able to take it, with no notion of speed or warm weights: Celery and
RQ workers pull the oldest message; ComfyUI's PromptQueue hands out prompts by submission number.
A job no free agent can run is skipped, not blocking the ones behind it.
"""

from __future__ import annotations

from models.catalogue import ModelPreset
from scheduler.baselines.common import Candidate, Choice, SubmitOrderBaseline
from scheduler.snapshot import PendingJob


class FifoPolicy(SubmitOrderBaseline):
    """Submit order; first feasible free agent in agent-id order."""

    name = "fifo"

    def choose(self, preset: ModelPreset, job: PendingJob, candidates: list[Candidate]) -> Choice:
        return candidates[0], "first free"
