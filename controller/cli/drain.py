"""`wanfarm drain NODE`: the agents of a node take no new work, stop their job at its next step with
a checkpoint (or finish it, `--finish`) and exit. Also the first half of `wanfarm leave`, and a
worker pod's preStop hook (`wanfarm drain --this-node --wait`)."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable, Sequence

from controller.cli.client import FarmClient
from controller.cli.exits import EXIT_FAILED, EXIT_INVALID, EXIT_OK
from controller.cli.node_state import load_joined
from controller.schemas import AgentOut

MIN_PREFIX = 4  # a node id prefix shorter than this is too easily someone else's
POLL_S = 1.0


class NoSuchNode(LookupError):
    """NODE names no agent of the farm, or several nodes by one prefix."""


def match_agents(agents: Sequence[AgentOut], node: str) -> list[AgentOut]:
    """The agents NODE names: an agent id; else every agent whose node id, node name or hostname it
    is; else those of the one node whose id starts with it. NoSuchNode when it names none."""
    exact = [a for a in agents if a.agent_id == node]
    if exact:
        return exact
    named = [a for a in agents if node in (a.node_id, a.node_name, a.hostname)]
    if named:
        return named
    prefixed = {a.node_id for a in agents if len(node) >= MIN_PREFIX and a.node_id.startswith(node)}
    if len(prefixed) == 1:
        return [a for a in agents if a.node_id in prefixed]
    if len(prefixed) > 1:
        raise NoSuchNode(
            f"{node!r} starts the ids of {len(prefixed)} nodes: give more of it\n{_listing(agents)}"
        )
    raise NoSuchNode(
        f"no agent, node id, node name or hostname {node!r} in the farm's agents\n{_listing(agents)}"
    )


def this_node() -> str:
    """This machine's node: the node id `wanfarm join` recorded, else the hostname (a Kubernetes
    worker pod's hostname is its pod name, which Ray takes as its node's hostname)."""
    joined = load_joined()
    if joined is not None:
        return joined.node_id or joined.node_name
    return socket.gethostname()


def drain_command(
    client: FarmClient,
    node: str,
    finish: bool,
    wait: bool,
    timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
    none_ok: bool = False,
) -> int:
    """Drain the agents NODE names; with `none_ok` (this machine's own node) a node without agents
    has nothing to drain, and that is success: a pod stopping before its agent started."""
    listed = client.agents()
    try:
        agents = match_agents(listed, node)
    except NoSuchNode as error:
        if none_ok and not any(node in (a.node_id, a.node_name, a.hostname) for a in listed):
            print(f"no agent of the farm runs on {node}: nothing to drain")
            return EXIT_OK
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    for agent in agents:
        drained = client.drain_agent(agent.agent_id, finish)
        job = f", job {drained.job_id} {'finishes first' if finish else 'stops and resumes elsewhere'}"
        where = agent.node_name or agent.hostname
        print(f"{drained.agent_id} on {where}: {drained.state}{job if drained.job_id else ''}")
    if not wait:
        return EXIT_OK
    return wait_gone(client, {a.agent_id for a in agents}, timeout_s, clock)


def wait_gone(
    client: FarmClient, agent_ids: set[str], timeout_s: float, clock: Callable[[], float] = time.monotonic
) -> int:
    """EXIT_OK once none of these agents is listed, EXIT_FAILED at the timeout."""
    deadline = clock() + timeout_s
    while True:
        left = sorted(agent_ids & {a.agent_id for a in client.agents()})
        if not left:
            print(f"drained: {', '.join(sorted(agent_ids))}")
            return EXIT_OK
        if clock() >= deadline:
            print(f"error: still draining after {timeout_s:.0f} s: {', '.join(left)}", file=sys.stderr)
            return EXIT_FAILED
        time.sleep(POLL_S)


def _listing(agents: Sequence[AgentOut]) -> str:
    if not agents:
        return "  (the farm has no agents)"
    rows: dict[tuple[str, str, str], list[str]] = {}
    for a in agents:
        rows.setdefault((a.node_id, a.node_name, a.hostname), []).append(a.agent_id)
    return "\n".join(
        f"  node {nid[:12]}  name {name or '-'}  host {host}  agents {', '.join(ids)}"
        for (nid, name, host), ids in rows.items()
    )
