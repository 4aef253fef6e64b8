"""The faults a chaos run injects, each a real one: what a crashed process, a dead controller, an S3
outage, a corrupted disk, a full disk or a pulled network cable do to the farm's parts."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import psutil
import ray

from controller.ray_cluster import NAMESPACE, actor_name
from gpu_agent.workspace import LOCK_SUFFIX, default_parent


class FaultKind(StrEnum):
    KILL_ACTOR = "kill agent actor"  # ray.kill: Ray knows at once
    KILL_WORKER = "kill agent process"  # SIGKILL of the actor's worker process
    KILL_CONTROLLER = "kill controller"  # SIGKILL, then started again
    S3_OUTAGE = "S3 outage"  # the server stops answering, then comes back with its data
    CORRUPT_CACHE = "corrupt cached weights"  # a cached weight file cut in half on one node
    FILL_WORKSPACE = "full work folder"  # an agent's work folder has no space left
    FREEZE_NODE = "node vanishes"  # SIGSTOP of a node's every process: no Ray notice at all


@dataclass(frozen=True)
class Fault:
    """One injected fault: when (seconds into the run), on what, and how long until the farm had
    recovered (see the driver for what recovery means for each kind)."""

    kind: FaultKind
    at_s: float
    target: str
    detail: str
    recovered_s: float | None  # None: not measured (nothing was running there)


def kill_actor(agent_id: str) -> None:
    ray.kill(ray.get_actor(actor_name(agent_id), namespace=NAMESPACE), no_restart=True)


def kill_worker(agent_id: str) -> int:
    """SIGKILL the agent actor's worker process; its pid."""
    actor = ray.get_actor(actor_name(agent_id), namespace=NAMESPACE)
    pid: Any = ray.get(actor.__ray_call__.remote(lambda _self: os.getpid()), timeout=30)
    os.kill(pid, signal.SIGKILL)
    return int(pid)


def corrupt_cache(node_cache: Path, model_id: str) -> Path | None:
    """Cut one cached weight file of the model in half (a torn write, a bad sector); the file, or
    None when the node holds no such file."""
    files = sorted((node_cache / model_id).rglob("*.safetensors"))
    if not files:
        return None
    victim = max(files, key=lambda path: path.stat().st_size)
    size = victim.stat().st_size
    with open(victim, "r+b") as handle:
        handle.truncate(size // 2)
    return victim


def agent_workspace(agent_id: str) -> Path | None:
    """The live agent's work folder (the one whose lock is held), if any."""
    parent = default_parent()
    for lock in sorted(parent.glob(f"{agent_id}-*{LOCK_SUFFIX}")):
        folder = parent / lock.name.removesuffix(LOCK_SUFFIX)
        if folder.is_dir() and held(lock):
            return folder
    return None


def held(lock: Path) -> bool:
    """Whether a live agent holds the flock on its folder's lock file."""
    try:
        with open(lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return False


class FullFolder:
    """A tmpfs filled to the last byte, mounted over an agent's work folder: every write there
    fails with ENOSPC, as on a full disk, without filling this machine's disk. Needs root (mount);
    `available` says whether this machine allows it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.hidden: set[str] = set()

    @staticmethod
    def available() -> bool:
        return os.geteuid() == 0 and _run(["mount", "--version"])

    def fill(self) -> None:
        # What the mount hides (the running task's folder) comes back at unmount: noted, see empty().
        self.hidden = {entry.name for entry in self.folder.iterdir()}
        copy = Path(tempfile.mkdtemp(prefix="wanfarm-chaos-full-"))
        # The running task's folders are copied in, as they are, so that it finds its files and its
        # writes fail for want of space (ENOSPC), as on a full disk, not because its folder vanished.
        _copy(self.folder, copy / "tree")
        if not _run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(self.folder)]):
            shutil.rmtree(copy, ignore_errors=True)
            raise OSError(f"could not mount a tmpfs over {self.folder}")
        _copy(copy / "tree", self.folder)
        shutil.rmtree(copy, ignore_errors=True)
        try:
            with open(self.folder / "filler", "wb") as filler:
                while True:
                    filler.write(b"\0" * 65536)
        except OSError:
            pass  # ENOSPC: full

    def empty(self) -> list[str]:
        """Unmount; the task folders the mount hid whose tasks ended meanwhile: the agent removed
        them inside the mount, so they are removed here, as the agent did (returned for the report)."""
        for _ in range(50):
            if _run(["umount", str(self.folder)]):
                break
            time.sleep(0.2)  # busy: a task has a file open there
        else:
            _run(["umount", "-l", str(self.folder)])
        return sorted(self.hidden)


def node_processes(raylet_pid: int) -> list[psutil.Process]:
    """A Ray node's raylet and every process it started (workers, its agents)."""
    raylet = psutil.Process(raylet_pid)
    return [raylet, *raylet.children(recursive=True)]


def signal_all(processes: list[psutil.Process], signum: int) -> None:
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signum)


def _copy(source: Path, dest: Path) -> None:
    # The task may remove or add a file meanwhile: what could be copied is enough.
    with contextlib.suppress(shutil.Error, OSError):
        shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)


def _run(command: list[str]) -> bool:
    return subprocess.run(command, capture_output=True, check=False).returncode == 0
