"""Each agent's scratch folders for job work, under one parent that its machine's agents share.

An agent makes a folder of its own, `<parent>/<agent_id>-<random>`, and holds an exclusive flock on
the `.lock` file beside it for as long as it lives. Starting, it removes every folder (and lock file)
whose lock nobody holds: the kernel drops a flock when its process dies, so what a killed agent left
is removed by the next agent started on the machine, under the same id or a new one (a restarted Ray
node has a new node id), while the folders of live agents are kept. A fresh name each start means
an agent never waits for a predecessor that is still dying.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import IO

LOCK_SUFFIX = ".lock"


def default_parent() -> Path:
    """The folder every agent of this user on this machine keeps its work under."""
    return Path(tempfile.gettempdir()) / f"wanfarm-agents-{os.getuid()}"


class Workspace:
    """One agent's folder for job work; claimed with `claim`, held while the object lives."""

    def __init__(self, root: Path, lock: IO[str]) -> None:
        self.root = root
        self._lock = lock

    @classmethod
    def claim(cls, parent: Path, agent_id: str) -> Workspace:
        """A new locked folder for the agent; the folders of agents that are gone are removed."""
        parent.mkdir(parents=True, exist_ok=True)
        name = f"{agent_id}-{secrets.token_hex(4)}"
        lock = _hold(parent / f"{name}{LOCK_SUFFIX}")
        root = parent / name
        root.mkdir(exist_ok=True)
        for other in {entry.name.removesuffix(LOCK_SUFFIX) for entry in parent.iterdir()} - {name}:
            _remove_if_abandoned(parent, other)
        return cls(root, lock)

    def job_folder(self, job_id: str) -> Path:
        """A new, empty folder for one attempt of the job; the caller removes it when done."""
        return Path(tempfile.mkdtemp(prefix=f"{job_id}-", dir=self.root))

    def release(self) -> None:
        """Let the next agent started here remove this folder (the kernel does it at exit too)."""
        self._lock.close()


def _hold(path: Path) -> IO[str]:
    """An exclusive flock on the file at `path`; only a sweeper, briefly, can hold it before us."""
    while True:
        handle = open(path, "a")  # noqa: SIM115 -- held open for the agent's life
        fcntl.flock(handle, fcntl.LOCK_EX)
        if _still_linked(path, handle):
            return handle
        handle.close()  # a sweeper deleted the file while we waited: lock a new one


def _remove_if_abandoned(parent: Path, name: str) -> None:
    lock_path = parent / f"{name}{LOCK_SUFFIX}"
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # its agent is alive
        if not _still_linked(lock_path, handle):
            return  # another agent swept it first
        shutil.rmtree(parent / name, ignore_errors=True)
        lock_path.unlink()


def _still_linked(path: Path, handle: IO[str]) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False
