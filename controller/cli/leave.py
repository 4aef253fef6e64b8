"""`wanfarm leave`: drain the agents of the node `wanfarm join` started here, then stop that node's
processes (and only them) and forget it."""

from __future__ import annotations

import sys

from controller.cli.client import FarmClient, FarmError
from controller.cli.drain import drain_command
from controller.cli.exits import EXIT_FAILED, EXIT_INVALID, EXIT_OK
from controller.cli.node_processes import running, stop
from controller.cli.node_state import JoinedNode, forget_joined, load_joined, state_file


def leave_command(client: FarmClient, timeout_s: float, force: bool) -> int:
    joined = load_joined()
    if joined is None:
        print(f"error: this machine has joined no farm (no {state_file()})", file=sys.stderr)
        return EXIT_INVALID
    if running(joined):
        drained = _drain(client, joined, timeout_s)
        if drained != EXIT_OK and not force:
            print(
                "  the node still runs; `wanfarm leave --force` stops it without draining (its running "
                "job is then lost and tried again elsewhere)",
                file=sys.stderr,
            )
            return drained
        if drained != EXIT_OK:
            print(f"stopping {joined.node_name} undrained (--force)", file=sys.stderr)
        signalled = stop(joined)
        print(f"stopped node {joined.node_name} ({signalled} processes)")
    else:
        print(f"node {joined.node_name} was not running")
    forget_joined()
    return EXIT_OK


def _drain(client: FarmClient, joined: JoinedNode, timeout_s: float) -> int:
    """Drain the node's agents and wait until they are gone; EXIT_OK also when it has none."""
    try:
        node = joined.node_id or joined.node_name
        return drain_command(client, node, finish=False, wait=True, timeout_s=timeout_s, none_ok=True)
    except FarmError as error:
        print(
            f"error: cannot drain {joined.node_name}: {error}",
            file=sys.stderr,
        )
        return EXIT_FAILED
