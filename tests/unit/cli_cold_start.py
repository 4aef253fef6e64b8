"""The light commands of `wanfarm`, each started as a fresh process, against a farm's real API
served in this process (a job store with no agents, so a submitted job stays queued). Shared by
tests/unit/test_cli_start.py (what they import) and tests/benchmarks/bench_cli_start.py (how long
they take)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from controller.api.app import create_app
from controller.auth import KeyRing
from controller.cli.client import FarmClient
from controller.service import FarmService
from controller.store import JobStore
from gpu_agent.storage import LocalStore
from tests.unit.served_app import serve

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "wan-tiny.json"
# httpx alone takes about 0.2 s to import: the command line's client speaks HTTP through the
# standard library instead.
HEAVY = ("torch", "diffusers", "transformers", "ray", "httpx")
# The commands that only read files or talk to a farm; `cancel` is given a queued job's id.
LIGHT_COMMANDS: dict[str, tuple[str, ...]] = {
    "--help": ("--help",),
    "models": ("models",),
    "render --dry-run": ("render", "--dry-run", str(EXAMPLE)),
    "submit": ("submit", str(EXAMPLE)),
    "status": ("status",),
    "agents": ("agents",),
    "cancel": ("cancel",),
}
FARM_COMMANDS = ("submit", "status", "agents", "cancel")


@dataclass(frozen=True)
class ColdStart:
    """One command run as a new process: its exit code, wall time, and the heavy packages it loaded."""

    command: str
    exit_code: int
    seconds: float
    heavy: tuple[str, ...]  # empty unless imports were traced
    stderr: str


@contextmanager
def light_farm(data_dir: Path) -> Iterator[str]:
    """A farm's API over a fresh job store and no agents, on a free port; yields its URL."""
    with JobStore(data_dir / "jobs.db") as store:
        service = FarmService(store, LocalStore(data_dir / "objects"), lambda: [], time.time)
        with serve(create_app(service, KeyRing({}), lambda: [])) as url:
            yield url


def queued_job(server: str) -> str:
    """The id of a new queued job (for `cancel`)."""
    client = FarmClient(server)
    try:
        return client.submit([json.loads(EXAMPLE.read_text())]).jobs[0].id
    finally:
        client.close()


def run_cold(command: str, server: str, trace_imports: bool = False) -> ColdStart:
    """`python -m controller.cli <command>` in a new process; with trace_imports, under -X importtime."""
    argv = list(LIGHT_COMMANDS[command])
    if command in FARM_COMMANDS:
        argv += ["--server", server]
    if command == "cancel":
        argv.append(queued_job(server))
    flags = ["-X", "importtime"] if trace_imports else []
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *flags, "-m", "controller.cli", *argv], capture_output=True, text=True, cwd=ROOT
    )
    seconds = time.perf_counter() - started
    heavy = _imported(done.stderr, HEAVY) if trace_imports else ()
    return ColdStart(command, done.returncode, seconds, heavy, done.stderr)


def _imported(importtime: str, packages: tuple[str, ...]) -> tuple[str, ...]:
    """The packages among `packages` that an -X importtime trace shows were imported."""
    names = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in importtime.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return tuple(package for package in packages if package in names)
