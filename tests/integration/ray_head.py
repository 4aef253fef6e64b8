"""A Ray head as a home lab's first PC starts it: `ray start --head` in a process of its own, with
token authentication on (a token of the test's own, never ~/.ray's), and stopped by killing the
processes that name its temp folder and those under them, never by `ray stop` (which would stop
every Ray cluster on the machine)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).parent / "ray")


@dataclass(frozen=True)
class TokenHead:
    address: str  # 127.0.0.1:PORT
    token_file: Path
    temp_dir: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a process that speaks to this head with its token."""
        return clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_file), **extra)

    def alive(self) -> bool:
        return any(p.info["name"] == "gcs_server" for p in self._processes())

    def _processes(self) -> list[psutil.Process]:
        """The head's processes (they name its temp folder) and those of nodes joined to it (a
        `ray start --address` names its address)."""
        marks = (str(self.temp_dir), self.address)
        return [
            p
            for p in psutil.process_iter(["name", "cmdline"])
            if p.pid != os.getpid() and any(m in arg for arg in (p.info["cmdline"] or []) for m in marks)
        ]

    def kill(self) -> None:
        roots = self._processes()
        found: dict[int, psutil.Process] = {}
        for root in roots:
            with suppress(psutil.NoSuchProcess):
                found.update({p.pid: p for p in (root, *root.children(recursive=True))})
        for process in found.values():
            with suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(list(found.values()), timeout=10)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any Ray address or authentication setting, plus `extra`."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_") and k != "RAY_ADDRESS"}
    return kept | extra


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def token_head(num_cpus: int = 1) -> Iterator[TokenHead]:
    # A short folder: Ray's unix sockets live under it, and a socket path has at most 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="wfh"))
    token_file = temp_dir / "token"
    token_file.write_text(secrets.token_hex(32))
    head = TokenHead(f"127.0.0.1:{free_port()}", token_file, temp_dir)
    argv = [RAY, "start", "--head", "--port", head.address.rpartition(":")[2], "--num-cpus", str(num_cpus)]
    argv += ["--include-dashboard=false", "--disable-usage-stats", "--temp-dir", str(temp_dir / "ray")]
    try:
        subprocess.run(argv, env=head.env(), check=True, capture_output=True, timeout=180)
        yield head
    finally:
        head.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)
