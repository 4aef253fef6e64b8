"""The commands that read or change jobs on a running farm: `status`, `cancel` and `agents`."""

from __future__ import annotations

import time

from controller.cli.client import FarmClient
from controller.cli.exits import EXIT_OK
from controller.schemas import JobOut


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
    for agent in agents:
        if agent.quarantine is not None:
            held = agent.quarantine
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(held.since))
            print(f"{agent.agent_id}: quarantined ({held.kind}) since {since}, no new work: {held.reason}")
    return EXIT_OK


def _print_detail(job: JobOut) -> None:
    print(f"job {job.id} ({job.owner}): {job.state}, model {job.model}, priority {job.priority}")
    print(f"  progress: {job.progress.phase or '-'} {job.progress.step}/{job.progress.total}")
    print(f"  agent: {job.agent or '-'}  profile: {job.profile or '-'}")
    preempted = f" ({job.preemptions} stopped for a higher priority, not charged)" if job.preemptions else ""
    print(f"  attempts: {job.attempts} of at most {job.max_attempts}{preempted}")
    if job.wait_reason:
        print(f"  waiting: {job.wait_reason}")
    if job.eta is not None or job.submit_eta is not None:
        print(f"  ETA: {_clock(job.eta)} (at submit: {_clock(job.submit_eta)})")
    for line in job.attempt_errors:
        print(f"  attempt failed: {line}")
    if job.error:
        print(f"  error: {job.error}")
    for output in job.outputs:
        print(f"  output: {output.url}")


def _clock(at: float | None) -> str:
    # Local wall-clock time, as a user plans with it; "-" when there is none (finished, or not placed yet).
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
