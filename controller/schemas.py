"""The REST API's bodies, shared by the server and the command-line client."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SUBMIT_KEYS = frozenset({"settings", "priority", "wait_for_capacity"})


class SubmitBody(BaseModel):
    """`POST /v1/jobs` in its explicit form; a bare settings object or list is accepted too."""

    # Strict as WanGP's own types: "yes" is not a bool, "90" not a priority, unknown keys a mistake.
    model_config = ConfigDict(strict=True, extra="forbid")

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


class JobSummary(BaseModel):
    """A job in a listing: everything but its settings, which its own page carries."""

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
    preemptions: int = 0  # attempts stopped for a job of a higher priority (not charged)
    eta: float | None = Field(
        description="When the job should finish (epoch seconds), from the latest placement round; null "
        "until the first round after the submission has placed it (POST /v1/jobs answers before that: "
        "read the job again for it), and once the job has finished."
    )
    submit_eta: float | None = Field(
        default=None,
        description="The first ETA a placement round gave the job (its ETA at submit), kept while `eta` "
        "moves on; null until that round. /metrics' wanfarm_eta_error_ratio measures it against the finish.",
    )
    wait_reason: str | None
    outputs: list[OutputOut]
    error: str | None
    attempt_errors: list[str]
    created_at: float
    started_at: float | None
    finished_at: float | None


class JobOut(JobSummary):
    settings: dict[str, Any]


class SubmitOut(BaseModel):
    jobs: list[JobOut]
    warnings: list[str] = []


class JobList(BaseModel):
    jobs: list[JobSummary]
    next: str | None  # pass as `before` for the next page


class LoraOut(BaseModel):
    """A LoRA uploaded to the farm: jobs name it in `activated_loras` by `name`, or as
    "<sha256>/<name>" for exactly this upload."""

    name: str
    sha256: str
    size: int  # bytes


class LoraList(BaseModel):
    loras: list[LoraOut]  # newest upload first


class QuarantineOut(BaseModel):
    """Why an agent gets no new work (controller.quarantine), until a probe job or an admin releases it."""

    kind: str  # failures, lost, storage or slow
    reason: str
    since: float
    probes_failed: int
    next_probe_at: float


class ReleasedOut(BaseModel):
    """`POST /v1/agents/{id}/release`: the agent takes new work again; the quarantine it left."""

    agent_id: str
    released: QuarantineOut


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
    storage_errors: int = 0  # failed storage attempts (retried or final) since the agent started
    last_storage_error: str | None = None
    plugins: list[str] = []  # plugins installed on its node (post-processors, model families)
    quarantine: QuarantineOut | None = None  # set while it gets no new work
    gpu_class: str | None = None  # its node's autoscaler class, when the farm autoscales
    draining: bool = False  # takes no new work; exits once its job has stopped or ended
    node_name: str = ""  # Ray's node name (`wanfarm join --node-name`), else its hostname


class DrainBody(BaseModel):
    """`POST /v1/agents/{id}/drain`: whether its running job may finish (else it stops at its next
    step boundary with a checkpoint and is queued again, uncharged, to resume elsewhere)."""

    model_config = ConfigDict(extra="forbid")
    finish: bool = False


class DrainOut(BaseModel):
    """The agent as the drain left it: "draining" while its job stops or ends, then "drained"."""

    agent_id: str
    node_id: str
    state: Literal["draining", "drained"]
    job_id: str | None = None


class ClassDemandOut(BaseModel):
    """One GPU class: its agents, the queued jobs asking it for a GPU, the GPUs asked of the autoscaler."""

    gpu_class: str
    gpu: str
    busy: int
    idle: int
    waiting: int
    wanted: int
    max_gpus: int


class AutoscaleOut(BaseModel):
    """`GET /v1/autoscale`: demand per GPU class against running agents (empty when not autoscaling)."""

    enabled: bool
    classes: list[ClassDemandOut] = []
    released: int = 0  # agents let go since the controller started, idle or drained


class ErrorOut(BaseModel):
    error: str
    detail: list[str] = []
    hint: str = ""


ERROR_MEANINGS = {
    400: "a malformed request: bad JSON or multipart, an invalid header, or a Host this farm does not serve",
    401: "a missing or unknown API key",
    403: "a write from another site's page (on a farm without API keys), or an admin call with a submit key",
    404: "no such job, output or agent (another owner's job answers as absent)",
    409: "a conflict: no agent of the pool can run it, the job has already finished, a reused key, a "
    "LoRA that queued or running jobs name, no folder of model definitions to add one to, or an agent to "
    "release that is not quarantined",
    413: "the body, batch or archive is over its limit",
    415: "the body is not of the media type the route reads",
    422: "the request is well-formed but invalid; `detail` names each problem",
    429: "too many open event streams",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these refusals, each with the ErrorOut body."""
    return {status: {"model": ErrorOut, "description": ERROR_MEANINGS[status]} for status in statuses}


class StatsOut(BaseModel):
    """Per-minute series over the last `window_s` seconds, oldest minute first."""

    window_s: int
    bucket_s: int
    start: float  # clock seconds at the start of the first bucket
    finished: list[int]  # jobs that succeeded or failed in each minute
    utilisation: list[float | None]  # mean share of busy agents; None where nothing was sampled
