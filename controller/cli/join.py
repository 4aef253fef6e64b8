"""`wanfarm join HEAD`: this machine becomes a Ray worker node of the farm whose Ray head is HEAD,
offering its GPUs (probed by Ray, or declared for a CPU machine), its weight cache and its class.

The node runs as `ray start --block` in a session of its own, so that `wanfarm leave` stops exactly
its process tree. Before starting, the head is asked whether it checks tokens, so that a token is
sent only to a head that wants one: a node that holds a token its head does not check is listed
alive but never runs a task (the head's raylet calls it without one)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from controller.cli.exits import EXIT_FAILED, EXIT_INVALID, EXIT_OK
from controller.cli.node_processes import node_id, running, stop, tree
from controller.cli.node_state import (
    JoinedNode,
    NodeProcess,
    load_joined,
    save_joined,
    state_file,
    wanfarm_home,
)
from controller.cli.ray_token import HOW_TO_PASS, MODE_ENV, TOKEN_ENV, TOKEN_PATH_ENV, RayToken, find_token

DEFAULT_RAY_PORT = 6379
STARTED = "Ray runtime started."
REFUSED_MARKS = ("InvalidAuthToken", "AuthenticationError")
CACHE_ENV, LORAS_ENV = "WANFARM_CACHE", "WANFARM_LORAS"  # read by the agents of the node (gpu_agent/agent.py)
# Ray's own client of the head's GCS, as `ray start` connects: it raises AuthenticationError at once
# when the head checks tokens and this one is missing or wrong.
_PROBE = """
import sys
from ray._raylet import GcsClient
try:
    GcsClient(address=sys.argv[1])
except Exception as error:
    print(type(error).__name__, error)
    sys.exit(3)
"""


class HeadAnswer(Enum):
    OPEN = "open"  # answered without a token
    REFUSED = "refused"  # wants a (another) token
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class JoinRequest:
    head: str  # HOST:PORT of the head's GCS
    node_name: str
    declared: tuple[str, ...] = ()  # GPU-table names; empty: Ray probes the machine's GPUs
    ram_gb: float | None = None
    cache: Path | None = None
    lora_dir: Path | None = None
    gpu_class: str | None = None
    num_cpus: int | None = None
    token_file: Path | None = None
    start_timeout_s: float = 180.0


def join_command(request: JoinRequest) -> int:
    earlier = load_joined()
    if earlier is not None and running(earlier):
        print(
            f"error: this machine already joined {earlier.head} as {earlier.node_name} "
            f"({state_file()}); `wanfarm leave` first",
            file=sys.stderr,
        )
        return EXIT_INVALID
    class_gpus = _class_gpus(request) if request.gpu_class else 0
    if request.gpu_class and not class_gpus:
        print(
            f"error: --gpu-class {request.gpu_class}: Ray finds no GPU on this machine; "
            "name the cards with --declare-gpu",
            file=sys.stderr,
        )
        return EXIT_INVALID
    environment = _node_environment(request)
    if isinstance(environment, int):
        return environment
    return _start(request, ray_start_argv(_ray_command(), request, class_gpus), environment)


def head_address(text: str) -> str:
    """HOST[:PORT] as HOST:PORT (Ray's default port 6379); ValueError when it is not one."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", str(DEFAULT_RAY_PORT))
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not a Ray head address: give HOST:PORT, e.g. 192.168.1.10:6379")
    return f"{host}:{port}"


def ray_start_argv(ray: str, request: JoinRequest, class_gpus: int) -> list[str]:
    """The `ray start` of the node: no secret in it, `ps` shows it."""
    from controller.ray_cluster import DECLARED_LABEL, DECLARED_RAM_LABEL, encode_declared
    from scheduler.demand import class_resource

    argv = [ray, "start", "--block", "--address", request.head, "--node-name", request.node_name]
    argv += ["--disable-usage-stats"]
    labels = {}
    if request.declared:
        argv += ["--num-gpus", str(len(request.declared))]
        labels[DECLARED_LABEL] = encode_declared(request.declared)
    if request.ram_gb:
        labels[DECLARED_RAM_LABEL] = f"{request.ram_gb:g}"
    if labels:
        argv += ["--labels", ",".join(f"{key}={value}" for key, value in labels.items())]
    if request.gpu_class:
        argv += ["--resources", f'{{"{class_resource(request.gpu_class)}": {class_gpus}}}']
    if request.num_cpus is not None:
        argv += ["--num-cpus", str(request.num_cpus)]
    return argv


def probe_head(address: str, auth: Mapping[str, str]) -> tuple[HeadAnswer, str]:
    """Whether the head answers with these authentication settings, and what it said."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        return HeadAnswer.UNREACHABLE, str(error)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_")} | dict(auth)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, address], env=env, capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        return HeadAnswer.UNREACHABLE, "its port answers, but not as a Ray head (no answer in 60 s)"
    said = (done.stdout + done.stderr).strip()
    if done.returncode == 0:
        return HeadAnswer.OPEN, said
    if any(mark in said for mark in REFUSED_MARKS):
        return HeadAnswer.REFUSED, said
    return HeadAnswer.UNREACHABLE, said.splitlines()[-1] if said else f"exit {done.returncode}"


def _node_environment(request: JoinRequest) -> dict[str, str] | int:
    """The node's environment (the token in it, when the head checks tokens), or an exit code."""
    answer, said = probe_head(request.head, {MODE_ENV: "disabled"})
    if answer is HeadAnswer.UNREACHABLE:
        return _fail(
            f"cannot reach the Ray head at {request.head}: {said}\n  is it started (`ray start --head "
            f"--port {request.head.rpartition(':')[2]}`), and does its firewall let this machine in?"
        )
    auth = {MODE_ENV: "disabled"}
    if answer is HeadAnswer.REFUSED:
        token = _token(request)
        if isinstance(token, int):
            return token
        answer, said = probe_head(request.head, token.environment())
        if answer is not HeadAnswer.OPEN:
            return _fail(
                f"the Ray head at {request.head} refused the token from {token.source}: {HOW_TO_PASS}"
            )
        auth = token.environment()
    env = {k: v for k, v in os.environ.items() if k not in (MODE_ENV, TOKEN_ENV, TOKEN_PATH_ENV)} | auth
    if request.cache is not None:
        env[CACHE_ENV] = str(request.cache.expanduser().resolve())
    if request.lora_dir is not None:
        env[LORAS_ENV] = str(request.lora_dir.expanduser().resolve())
    return env


def _token(request: JoinRequest) -> RayToken | int:
    from controller.cli.ray_token import TokenError

    try:
        token = find_token(request.token_file, os.environ, Path.home())
    except TokenError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    if token is None:
        return _fail(f"the Ray head at {request.head} checks tokens and this machine has none: {HOW_TO_PASS}")
    return token


def _start(request: JoinRequest, argv: list[str], env: dict[str, str]) -> int:
    log = wanfarm_home() / "node.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        # A session of its own: closing this terminal or its Ctrl-C leaves the node running.
        process = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + request.start_timeout_s
    while STARTED not in _text(log):
        if process.poll() is not None:
            return _start_failed(request, log, process.returncode)
        if time.monotonic() > deadline:
            stop(_joined(request, process.pid, log))
            return _fail(f"the node did not start within {request.start_timeout_s:.0f} s; see {log}")
        time.sleep(0.5)
    joined = _joined(request, process.pid, log)
    path = save_joined(joined)
    gpus = ", ".join(request.declared) + " (declared)" if request.declared else "probed by Ray"
    print(f"joined {request.head} as {request.node_name} (node {joined.node_id[:12] or '?'}); GPUs: {gpus}")
    print(f"  state: {path}; log: {log}; `wanfarm leave` drains and stops this node")
    return EXIT_OK


def _joined(request: JoinRequest, pid: int, log: Path) -> JoinedNode:
    processes = tree(pid)
    for _ in range(20):  # the raylet is up by the time ray start says so; its pid may trail a moment
        if node_id(processes):
            break
        time.sleep(0.25)
        processes = tree(pid)
    root = processes[0] if processes else NodeProcess(pid, 0.0)
    return JoinedNode(request.head, request.node_name, node_id(processes), root, processes, str(log))


def _start_failed(request: JoinRequest, log: Path, code: int) -> int:
    text = _text(log)
    if any(mark in text for mark in REFUSED_MARKS):
        return _fail(f"the Ray head at {request.head} refused this node's token: {HOW_TO_PASS}")
    tail = "\n  ".join(text.strip().splitlines()[-15:])
    return _fail(f"`ray start` failed (exit {code}); its last lines ({log}):\n  {tail}")


def _class_gpus(request: JoinRequest) -> int:
    if request.declared:
        return len(request.declared)
    from ray._private.accelerators import NvidiaGPUAcceleratorManager

    return int(NvidiaGPUAcceleratorManager.get_current_node_num_accelerators())


def _ray_command() -> str:
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else "ray"


def _text(log: Path) -> str:
    try:
        return log.read_text(errors="replace")
    except OSError:
        return ""


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_FAILED
