"""The processes of a Ray node that `wanfarm join` started, found and stopped by process tree.

`ray stop` is never used: it signals every Ray process of the machine by name, so on a PC that is
also the head (a one-PC lab, the tests) it would stop the head and everyone's clusters with it."""

from __future__ import annotations

import contextlib

import psutil

from controller.cli.node_state import JoinedNode, NodeProcess

STOP_GRACE_S = 10.0  # a raylet unregisters from the head on SIGTERM; a loaded machine needs seconds


def tree(root_pid: int) -> tuple[NodeProcess, ...]:
    """The root and every process under it (the raylet, its agents and workers)."""
    try:
        root = psutil.Process(root_pid)
        found = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return ()
    return tuple(p for p in (_record(process) for process in found) if p is not None)


def node_id(processes: tuple[NodeProcess, ...]) -> str:
    """The node id on the raylet's command line (`--node_id=<hex>`), "" when no raylet is there."""
    for process in processes:
        alive = _alive(process)
        if alive is None:
            continue
        try:
            if alive.name() != "raylet":
                continue
            for arg in alive.cmdline():
                if arg.startswith("--node_id="):
                    return arg.removeprefix("--node_id=")
        except psutil.Error:
            continue
    return ""


def running(node: JoinedNode) -> bool:
    return is_running(node.root)


def is_running(process: NodeProcess) -> bool:
    return _alive(process) is not None


def stop(node: JoinedNode, grace_s: float = STOP_GRACE_S) -> int:
    """SIGTERM to the node's processes (those recorded, and whatever runs under its root now), then
    SIGKILL to those still there after `grace_s`; returns how many were signalled."""
    # The tree is read before any signal: a raylet's agents and workers lose their parent once it exits.
    records = {p.pid: p for p in (*node.processes, *tree(node.root.pid))}
    targets = [alive for alive in (_alive(p) for p in records.values()) if alive is not None]
    for process in targets:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, left = psutil.wait_procs(targets, timeout=grace_s)
    for process in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(left, timeout=grace_s)
    return len(targets)


def _record(process: psutil.Process) -> NodeProcess | None:
    try:
        return NodeProcess(process.pid, process.create_time())
    except psutil.NoSuchProcess:
        return None


def _alive(record: NodeProcess) -> psutil.Process | None:
    """The process if it still runs and is the one recorded (not a reused pid)."""
    try:
        process = psutil.Process(record.pid)
        if abs(process.create_time() - record.started) > 0.01 or process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except psutil.NoSuchProcess:
        return None
