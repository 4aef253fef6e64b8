"""The policy interface: what the controller and the simulator call, whichever policy they run."""

from __future__ import annotations

from typing import Protocol

from scheduler.snapshot import Decisions, Observation, Snapshot


class Policy(Protocol):
    """Decides from a snapshot and never touches the cluster; a policy that learns changes its own
    state only in `observe`."""

    name: str

    def place(self, snapshot: Snapshot) -> Decisions:
        """Assignments, prefetches and waiting reasons for this snapshot; the caller applies them."""
        ...

    def observe(self, observation: Observation) -> None:
        """Learn from a finished job (a policy that does not learn ignores it)."""
