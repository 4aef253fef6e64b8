"""The REST API's bodies, shared by the server and the command-line client."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class SubmitBody(BaseModel):
    """`POST /v1/jobs` in its explicit form; a bare settings object or list is accepted too."""

    settings: dict[str, Any] | list[dict[str, Any]]
    priority: int = Field(default=50, ge=0, le=100)
    wait_for_capacity: bool = False  # accept a job no agent of the pool can run yet


class ProgressOut(BaseModel):
    step: int
    total: int
    phase: str


class OutputOut(BaseModel):
    name: str
    key: str
    url: str  # presigned (S3) or served by the API (local storage)


class JobOut(BaseModel):
    id: str
    owner: str
    state: str
    model: str
    priority: int
    progress: ProgressOut
    agent: str | None
    profile: str | None
    attempts: int
    max_attempts: int
    eta: float | None
    wait_reason: str | None
    outputs: list[OutputOut]
    error: str | None
    attempt_errors: list[str]
    created_at: float
    started_at: float | None
    finished_at: float | None
    settings: dict[str, Any]


class SubmitOut(BaseModel):
    jobs: list[JobOut]
    warnings: list[str] = []


class JobList(BaseModel):
    jobs: list[JobOut]
    next: str | None  # pass as `before` for the next page


class AgentOut(BaseModel):
    agent_id: str
    node_id: str
    hostname: str
    gpu_index: int
    gpu_name: str
    arch: str
    capability: str
    vram_total: int
    vram_free: int
    ram_total: int
    disk_free: int
    cached_models: list[str]
    hot_model: str | None
    declared: bool
    device: str
    busy: bool
    current_job: str | None


class ErrorOut(BaseModel):
    error: str
    detail: list[str] = []
    hint: str = ""


class StatsOut(BaseModel):
    """Per-minute series over the last `window_s` seconds, oldest minute first."""

    window_s: int
    bucket_s: int
    start: float  # clock seconds at the start of the first bucket
    finished: list[int]  # jobs that succeeded or failed in each minute
    utilisation: list[float | None]  # mean share of busy agents; None where nothing was sampled
