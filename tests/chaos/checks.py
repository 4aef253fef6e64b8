"""What a chaos run must leave true, read after it from the parts themselves: the job store's
records and history, the bucket's objects, the agents' work folders."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from controller.jobs import JobEvent, JobRecord, JobState
from gpu_agent.storage import CHECKPOINTS_PREFIX, TEMP_PREFIX, WINDOWS_PREFIX
from gpu_agent.workspace import LOCK_SUFFIX, default_parent
from models.progress import Phase
from tests.chaos.faults import held


@dataclass(frozen=True)
class Expected:
    """A submitted job and the outputs its settings ask for."""

    job_id: str
    outputs: int


@dataclass
class Findings:
    """Every broken promise, by kind, and what the run cost."""

    problems: list[str] = field(default_factory=list)
    attempts: int = 0
    steps_needed: int = 0  # denoising steps of the attempts that succeeded
    steps_lost: int = 0  # denoising steps of attempts that did not (redone by a later attempt)
    attempt_errors: list[str] = field(default_factory=list)


def check_jobs(
    expected: list[Expected],
    records: dict[str, JobRecord],
    history: dict[str, list[JobEvent]],
    keys: Iterable[str],
    prefix: str,
) -> Findings:
    """Every job succeeded with exactly the outputs asked for, each stored once; no attempt ran
    beside another of the same job; no checkpoint, window or half-written object is left."""
    found = Findings()
    stored = sorted(keys)
    for job in expected:
        record = records.get(job.job_id)
        if record is None:
            found.problems.append(f"{job.job_id}: accepted, then missing from the store")
            continue
        found.attempts += record.attempts
        found.attempt_errors += [f"{job.job_id}: {line}" for line in record.attempt_errors]
        if record.state is not JobState.SUCCEEDED:
            found.problems.append(f"{job.job_id}: ended {record.state.value}: {record.error}")
        under = [key for key in stored if key.startswith(f"{prefix}jobs/{job.job_id}/")]
        listed = sorted(prefix + key for key in record.outputs)
        if record.state is JobState.SUCCEEDED and len(record.outputs) != job.outputs:
            found.problems.append(f"{job.job_id}: {len(record.outputs)} outputs, asked for {job.outputs}")
        if under != listed:
            found.problems.append(f"{job.job_id}: the bucket holds {under}, the job lists {listed}")
        found.problems += _overlaps(job.job_id, history.get(job.job_id, []))
        needed, lost = _steps(record, history.get(job.job_id, []))
        found.steps_needed += needed
        found.steps_lost += lost
    for leftover in (CHECKPOINTS_PREFIX, WINDOWS_PREFIX):
        left = [key for key in stored if key.startswith(prefix + leftover)]
        if left:
            found.problems.append(f"left in the bucket under {leftover}: {left[:5]} ({len(left)})")
    temporary = [key for key in stored if TEMP_PREFIX in key]
    if temporary:
        found.problems.append(f"half-written objects left in the bucket: {temporary[:5]}")
    return found


def leftover_folders(agent_ids: Iterable[str], excused: set[Path], parent: Path | None = None) -> list[str]:
    """Task folders left in these agents' work folders once every job ended, and work folders of
    dead agents that no agent swept; `excused` are folders the driver itself hid from their agent."""
    parent = parent or default_parent()
    prefixes = tuple(f"{agent_id}-" for agent_id in agent_ids)
    left = []
    for lock in sorted(parent.glob(f"*{LOCK_SUFFIX}")):
        folder = parent / lock.name.removesuffix(LOCK_SUFFIX)
        if not folder.name.startswith(prefixes):
            continue  # another farm's agents (another test on this machine)
        if not held(lock):
            left.append(f"{folder} (its agent is gone, and no agent swept it)")
            continue
        left += [f"{entry}" for entry in sorted(folder.iterdir()) if entry not in excused]
    return left


def _overlaps(job_id: str, events: list[JobEvent]) -> list[str]:
    """Two attempts of the job running at once, from its history: attempt k+1 must start after
    attempt k ended (a state event of attempt k that is not its start)."""
    started: dict[int, float] = {}
    ended: dict[int, float] = {}
    for event in events:
        attempt = event.data.get("attempt")
        if event.kind != "state" or attempt is None:
            continue
        if event.data.get("state") == JobState.RUNNING.value and "agent_id" in event.data:
            started[attempt] = event.at
        elif attempt in started and attempt not in ended:
            ended[attempt] = event.at
    problems = []
    for attempt, at in sorted(started.items()):
        before = attempt - 1
        if before in started and (before not in ended or ended[before] > at):
            problems.append(f"{job_id}: attempt {attempt} started before attempt {before} ended")
    return problems


def _steps(record: JobRecord, events: list[JobEvent]) -> tuple[int, int]:
    """(steps of the attempt that succeeded, steps of the attempts that did not). The store logs
    progress once a second and at the last step, so a lost attempt's count is low by at most a
    second's steps."""
    reached: dict[int, dict[int, int]] = {}  # attempt -> generation start seq -> max step
    for event in events:
        if event.kind != "progress" or event.data.get("phase") != Phase.DENOISING.value:
            continue
        per_attempt = reached.setdefault(event.data["attempt"], {})
        # A new generation (a repeat) starts its steps again: count each generation's highest.
        runs = per_attempt or {0: 0}
        last = max(runs)
        step = int(event.data["step"])
        if step < runs[last]:
            last = event.seq
        runs[last] = max(runs.get(last, 0), step)
        reached[event.data["attempt"]] = runs
    needed = sum(reached.get(record.attempts, {}).values()) if record.state is JobState.SUCCEEDED else 0
    lost = sum(sum(runs.values()) for attempt, runs in reached.items() if attempt != record.attempts)
    return needed, lost
