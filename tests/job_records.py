"""Jobs as the tests and benchmarks build them: a submission for the store, a queued job for a policy,
a task for an agent, each from one WorkSize, so no module spells a job's fields again."""

from __future__ import annotations

from typing import Any

from controller.jobs import NewJob
from gpu_agent.messages import RenderTask
from models.attachments import Attachments
from models.profiles import Profile
from models.settings import parse_settings, resolve
from models.work import WorkSize
from processing.queue_records import ATTACHMENT_KEYS
from scheduler.snapshot import PendingJob

TINY_WORK = WorkSize("wan-tiny", 64, 64, 9, 4)  # what {"model_type": "wan-tiny"} resolves to
FOX = {"prompt": "a fox", "seed": 7}
WAN_14B = "wan2.1-t2v-14b"


def new_job(
    owner: str = "ana",
    priority: int = 50,
    settings: dict[str, Any] | None = None,
    work: WorkSize = TINY_WORK,
    max_attempts: int = 3,
) -> NewJob:
    """A submission of the tiny Wan model, ready for `JobStore.add_jobs`."""
    return NewJob(owner, priority, dict(FOX) if settings is None else settings, work, max_attempts)


def pending_job(
    job_id: str = "j1",
    model_id: str = WAN_14B,
    *,
    size: tuple[int, int, int] = (1280, 720, 81),
    steps: int = 30,
    batch: int = 1,
    priority: int = 50,
    owner: str = "ann",
    submitted_at: float = 0.0,
    avoid: frozenset[str] = frozenset(),
) -> PendingJob:
    """A queued job as a policy sees it: a 720p Wan 14B video unless told otherwise."""
    work = WorkSize(model_id, *size, steps, batch)
    return PendingJob(job_id, work, priority, owner, submitted_at, avoid_agents=avoid)


def placed_task(
    job_id: str, settings: dict[str, Any], attempt: int = 1, profile: Profile = Profile.P4
) -> RenderTask:
    """The task the dispatcher sends for these settings: placed as the work they resolve to now."""
    # The work does not depend on the files the settings name (the agent fetches those itself).
    without_files = {key: value for key, value in settings.items() if key not in ATTACHMENT_KEYS}
    work = resolve(parse_settings(without_files), Attachments.refused()).work
    return RenderTask(job_id, attempt, dict(settings), work, profile)
