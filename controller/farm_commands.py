"""The farm's commands: `up`, `submit`, `status`, `cancel`, `agents` and `demo`."""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from controller.client import FarmClient
from controller.farm import Farm, FarmConfig
from controller.progress_bar import ProgressBar
from controller.schemas import JobOut
from models.progress import Phase, Progress
from processing.queue_zip import ATTACHMENT_KEYS, export_queue_zip
from processing.settings_files import SettingsEntry, SettingsFileError, load_settings_files

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
FINISHED = {"succeeded", "failed", "canceled"}
DEMO_GPUS = ("RTX 3060", "RTX 4090")


def up_command(config: FarmConfig) -> int:
    """Serve until SIGINT or SIGTERM."""
    farm = Farm(config).start()
    agents = farm.agent_listing()
    print(f"WanFarm serving {farm.url} with {len(agents)} agent(s); data in {config.data_dir}", flush=True)
    for agent in agents:
        print(f"  {agent.agent_id}: {agent.gpu_name}{' (declared)' if agent.declared else ''}", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    farm.stop(kill_agents=config.ray_address is None)
    return EXIT_OK


def submit_command(
    client: FarmClient, files: Sequence[Path], priority: int, wait: bool, wait_for_capacity: bool
) -> int:
    with tempfile.TemporaryDirectory(prefix="wanfarm-submit-") as work:
        try:
            jobs = _submit_files(client, files, priority, wait_for_capacity, Path(work))
        except SettingsFileError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_INVALID
    for job in jobs:
        print(f"{job.id}  {job.model}  {job.state}")
    if not wait:
        return EXIT_OK
    finished = wait_for(client, [job.id for job in jobs])
    for job in finished:
        _print_outcome(job)
    return EXIT_OK if all(job.state == "succeeded" for job in finished) else EXIT_FAILED


def wait_for(client: FarmClient, job_ids: list[str], poll_s: float = 0.3) -> list[JobOut]:
    """Follow jobs with a progress bar each until all have finished."""
    bars = {job_id: ProgressBar(job_id) for job_id in job_ids}
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


def status_command(client: FarmClient, job_id: str | None, states: list[str] | None, limit: int) -> int:
    if job_id:
        _print_detail(client.job(job_id))
        return EXIT_OK
    listing = client.jobs(states, limit)
    print(f"{'id':<18} {'state':<10} {'model':<22} {'pri':>3} {'progress':<16} agent")
    for job in listing.jobs:
        progress = (
            f"{job.progress.phase} {job.progress.step}/{job.progress.total}" if job.progress.phase else "-"
        )
        agent = job.agent or "-"
        print(f"{job.id:<18} {job.state:<10} {job.model:<22} {job.priority:>3} {progress:<16} {agent}")
    return EXIT_OK


def cancel_command(client: FarmClient, job_id: str) -> int:
    job = client.cancel(job_id)
    print(f"{job.id}: {job.state}{' (cancel requested)' if job.state == 'running' else ''}")
    return EXIT_OK


def agents_command(client: FarmClient) -> int:
    print(f"{'agent':<16} {'gpu':<14} {'arch':<9} {'VRAM':>7} {'state':<6} {'hot model':<18} cached")
    agents = client.agents()
    for agent in agents:
        gpu = agent.gpu_name + ("*" if agent.declared else "")
        state = "busy" if agent.busy else "idle"
        print(
            f"{agent.agent_id:<16} {gpu:<14} {agent.arch:<9} {agent.vram_total / 2**30:>6.1f}G {state:<6} "
            f"{agent.hot_model or '-':<18} {','.join(agent.cached_models) or '-'}"
        )
    print("* declared GPU: inventory from configuration; renders on the CPU")
    for agent in agents:
        if agent.storage_errors:
            # Retried errors count too: a number that keeps growing means the node's storage is failing.
            print(
                f"{agent.agent_id}: {agent.storage_errors} storage error(s), last: {agent.last_storage_error}"
            )
    return EXIT_OK


def demo_command(examples: Path, out_dir: Path, data_dir: Path | None) -> int:
    """An embedded farm with declared CPU agents renders the examples through its REST API."""
    with tempfile.TemporaryDirectory(prefix="wanfarm-demo-") as scratch:
        config = FarmConfig(data_dir=data_dir or Path(scratch), port=0, declared_gpus=DEMO_GPUS)
        farm = Farm(config).start()
        try:
            print(f"demo farm at {farm.url}: agents " + ", ".join(a.gpu_name for a in farm.agent_listing()))
            client = FarmClient(farm.url)
            jobs = _submit_files(client, [examples], 50, False, Path(scratch))
            finished = wait_for(client, [job.id for job in jobs])
            out_dir.mkdir(parents=True, exist_ok=True)
            for job in finished:
                for output in job.outputs:
                    path = client.download(output.url, out_dir / output.name)
                    print(f"{job.id} {job.model} on {job.agent}: {path}")
                if job.state != "succeeded":
                    print(f"{job.id} {job.model}: {job.state}: {job.error}", file=sys.stderr)
            ok = sum(job.state == "succeeded" for job in finished)
            print(f"{ok} of {len(finished)} job(s) rendered through the farm into {out_dir.resolve()}")
            return EXIT_OK if ok == len(finished) else EXIT_FAILED
        finally:
            farm.stop(kill_agents=True)


def _submit_files(
    client: FarmClient, files: Sequence[Path], priority: int, wait_for_capacity: bool, work: Path
) -> list[JobOut]:
    jobs: list[JobOut] = []
    for path in files:
        if path.suffix.lower() == ".zip":
            jobs += client.submit_queue(path, priority, wait_for_capacity).jobs
            continue
        entries = load_settings_files(path, work)
        if any(_names_files(entry.data) for entry in entries):
            # The farm reads no paths: local attachments travel as a queue.zip, as WanGP bundles them.
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


def _print_detail(job: JobOut) -> None:
    print(f"job {job.id} ({job.owner}): {job.state}, model {job.model}, priority {job.priority}")
    print(f"  progress: {job.progress.phase or '-'} {job.progress.step}/{job.progress.total}")
    print(f"  agent: {job.agent or '-'}  profile: {job.profile or '-'}")
    print(f"  attempts: {job.attempts} of at most {job.max_attempts}")
    if job.wait_reason:
        print(f"  waiting: {job.wait_reason}")
    for line in job.attempt_errors:
        print(f"  attempt failed: {line}")
    if job.error:
        print(f"  error: {job.error}")
    for output in job.outputs:
        print(f"  output: {output.url}")
