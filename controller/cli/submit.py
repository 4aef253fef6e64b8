"""`wanfarm submit`: send settings files, folders or queue.zips to a farm, and follow the jobs."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from controller.cli.client import FarmClient
from controller.cli.exits import EXIT_FAILED, EXIT_INVALID, EXIT_OK
from controller.cli.progress_bar import ProgressBar
from controller.schemas import JobOut
from models.progress import Phase, Progress
from processing.queue_records import ATTACHMENT_KEYS
from processing.settings_files import SettingsEntry, SettingsFileError, load_settings_files

FINISHED = {"succeeded", "failed", "canceled"}


def submit_command(
    client: FarmClient, files: Sequence[Path], priority: int, wait: bool, wait_for_capacity: bool
) -> int:
    with tempfile.TemporaryDirectory(prefix="wanfarm-submit-") as work:
        try:
            jobs = submit_files(client, files, priority, wait_for_capacity, Path(work))
        except SettingsFileError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_INVALID
    for job in jobs:
        print(f"{job.id}  {job.model}  {job.state}")
    if not wait:
        return EXIT_OK
    finished = wait_for(client, jobs)
    for job in finished:
        _print_outcome(job)
    return EXIT_OK if all(job.state == "succeeded" for job in finished) else EXIT_FAILED


def wait_for(client: FarmClient, jobs: Sequence[JobOut], poll_s: float = 0.3) -> list[JobOut]:
    """Follow jobs with a progress bar each, labelled with the job and its model, until all have ended."""
    width = max((len(job.model) for job in jobs), default=0)
    bars = {job.id: ProgressBar(f"{job.id}  {job.model:<{width}}") for job in jobs}
    job_ids = [job.id for job in jobs]
    done: dict[str, JobOut] = {}
    while len(done) < len(job_ids):
        for job_id in job_ids:
            if job_id in done:
                continue
            job = client.job(job_id)
            if job.state in FINISHED:
                done[job_id] = job
                bars[job_id](Progress(1, 1, Phase.DONE))
            elif job.progress.phase:
                bars[job_id](Progress(job.progress.step, job.progress.total, Phase(job.progress.phase)))
        time.sleep(poll_s)
    return [done[job_id] for job_id in job_ids]


def submit_files(
    client: FarmClient, files: Sequence[Path], priority: int, wait_for_capacity: bool, work: Path
) -> list[JobOut]:
    """Submits each file (settings, a folder of them, or a queue.zip); local attachments go in a zip."""
    jobs: list[JobOut] = []
    for path in files:
        if path.suffix.lower() == ".zip":
            jobs += client.submit_queue(path, priority, wait_for_capacity).jobs
            continue
        entries = load_settings_files(path, work)
        if any(_names_files(entry.data) for entry in entries):
            # The farm reads no paths: local attachments travel as a queue.zip, as WanGP bundles them.
            from processing.queue_zip import export_queue_zip  # here: plain settings need no zip code

            archive = work / f"{path.stem}.zip"
            try:
                export_queue_zip([_absolute_attachments(entry) for entry in entries], archive)
            except (OSError, ValueError) as error:
                raise SettingsFileError(f"{path}: {error}") from None
            jobs += client.submit_queue(archive, priority, wait_for_capacity).jobs
        else:
            answer = client.submit([entry.data for entry in entries], priority, wait_for_capacity)
            for warning in answer.warnings:
                print(f"warning: {warning}", file=sys.stderr)
            jobs += answer.jobs
    return jobs


def _names_files(data: object) -> bool:
    return isinstance(data, dict) and any(_file_names(data.get(key)) for key in ATTACHMENT_KEYS)


def _file_names(value: object) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, str) and item.strip()]


def _absolute_attachments(entry: SettingsEntry) -> dict[str, Any]:
    """The entry's settings with relative attachment names made absolute from its folder."""
    settings = dict(entry.data) if isinstance(entry.data, dict) else {}
    folder = entry.attachments.folder or Path.cwd()

    def absolute(name: Any) -> Any:
        return str(folder / name) if isinstance(name, str) and name.strip() else name

    for key in settings.keys() & set(ATTACHMENT_KEYS):
        value = settings[key]
        settings[key] = [absolute(v) for v in value] if isinstance(value, list) else absolute(value)
    return settings


def _print_outcome(job: JobOut) -> None:
    if job.state == "succeeded":
        for output in job.outputs:
            print(f"{job.id}: {output.url}")
    else:
        print(f"{job.id}: {job.state}: {job.error or ''}", file=sys.stderr)
