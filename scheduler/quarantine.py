"""Which agents to quarantine: pure rules over what their attempts did, in sliding windows.

An agent (or every agent of a node) is quarantined, and gets no new work, when it fails where others
succeed, keeps losing its actor, sees object-storage errors grow, or renders far slower than its GPU
model does elsewhere. The clock is an argument of every call; the controller applies the verdicts
(controller/quarantine.py) and persists them. Why these numbers: docs/hardening.md, "Quarantine".
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from models.work import WorkSize

_T = TypeVar("_T")


class QuarantineKind(StrEnum):
    """Why an agent is quarantined, as a short label (the /metrics label; the reason says more)."""

    FAILURES = "failures"
    LOST = "lost"
    STORAGE = "storage"
    SLOW = "slow"


@dataclass(frozen=True)
class QuarantineRules:
    """The thresholds; the defaults are the farm's (docs/hardening.md says why)."""

    failures: int = 3  # failed attempts on one agent in `failure_window_s` ...
    failure_window_s: float = 600.0
    success_memory_s: float = 3600.0  # ... of models another agent rendered this recently
    losses: int = 3  # actors lost on one agent, or on one node across its agents, in the window
    loss_window_s: float = 600.0
    storage_errors: int = 5  # storage errors an agent's count grew by in the window
    storage_window_s: float = 600.0
    slow_factor: float = 3.0  # seconds per unit of work above this many times its GPU model's ...
    slow_jobs: int = 3  # ... on this many of the agent's last successes in a row
    slow_reference: int = 3  # successes of other agents of that GPU model needed to judge
    speed_samples: int = 32  # recent successes kept per (model, GPU model)
    probe_cooldown_s: float = 120.0  # from quarantine to the first probe job
    probe_backoff: float = 2.0  # each failed probe multiplies the wait before the next
    probe_max_wait_s: float = 3600.0


@dataclass(frozen=True)
class AttemptOutcome:
    """One attempt's end on an agent, as the tracker reads it."""

    agent_id: str
    node_id: str
    gpu_name: str
    work: WorkSize
    at: float
    succeeded: bool
    render_seconds: float = 0.0  # of a success; 0 when not measured
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    """Quarantine `agent_id` from `since`, for `kind`; `reason` is the sentence a user reads."""

    agent_id: str
    node_id: str
    kind: QuarantineKind
    reason: str
    since: float


def retry_elsewhere(agent_id: str, failed_on: Collection[str], others_can_run: bool) -> bool:
    """Whether a failed attempt is the agent's fault until shown otherwise: queued again on another
    agent, not charged. A job that failed on another agent already fails for real: its error is
    the job's, not the agents'."""
    return others_can_run and not (set(failed_on) - {agent_id})


def probe_wait(rules: QuarantineRules, probes_failed: int) -> float:
    """Seconds from quarantine (or from the last failed probe) to the next probe job."""
    return min(rules.probe_cooldown_s * rules.probe_backoff**probes_failed, rules.probe_max_wait_s)


@dataclass
class _AgentWindow:
    node_id: str
    failures: deque[AttemptOutcome] = field(default_factory=deque)
    losses: deque[float] = field(default_factory=deque)
    storage: deque[tuple[float, int]] = field(default_factory=deque)  # (when, count reported)
    slow_streak: int = 0


class QuarantineTracker:
    """Sliding windows of every agent's outcomes; each `record_*` returns the verdicts it reaches.

    An agent already quarantined gets no new verdict until `release`d (its windows start empty)."""

    def __init__(self, rules: QuarantineRules | None = None) -> None:
        self.rules = rules or QuarantineRules()
        self._agents: dict[str, _AgentWindow] = {}
        self._held: set[str] = set()  # agents under quarantine
        # model -> agent -> when it last succeeded with that model
        self._successes: dict[str, dict[str, float]] = {}
        # (model, GPU model) -> recent (agent, seconds per unit of work) of successes
        self._speeds: dict[tuple[str, str], deque[tuple[str, float]]] = {}
        self._node_losses: dict[str, deque[tuple[float, str]]] = {}

    def hold(self, agent_ids: Iterable[str]) -> None:
        """Agents already quarantined (read back from the store at start)."""
        self._held.update(agent_ids)

    def release(self, agent_id: str) -> None:
        """The agent takes work again, judged afresh."""
        self._held.discard(agent_id)
        window = self._agents.pop(agent_id, None)
        if window is not None:
            self._agents[agent_id] = _AgentWindow(window.node_id)

    def record_attempt(self, outcome: AttemptOutcome) -> list[Verdict]:
        if outcome.succeeded:
            return self._success(outcome)
        window = self._window(outcome.agent_id, outcome.node_id)
        window.failures.append(outcome)
        _expire(window.failures, outcome.at - self.rules.failure_window_s, lambda o: o.at)
        return self._judge_failures(outcome.agent_id, window, outcome.at)

    def record_lost(
        self, agent_id: str, node_id: str, node_agents: Collection[str], now: float
    ) -> list[Verdict]:
        """The agent's actor was lost; `node_agents`: every agent of its node, quarantined together
        when the node's losses (across its agents) reach the threshold on more than one of them."""
        rules = self.rules
        window = self._window(agent_id, node_id)
        window.losses.append(now)
        _expire(window.losses, now - rules.loss_window_s, lambda at: at)
        on_node = self._node_losses.setdefault(node_id, deque())
        on_node.append((now, agent_id))
        _expire(on_node, now - rules.loss_window_s, lambda loss: loss[0])
        hit = {agent for _, agent in on_node}
        if len(on_node) >= rules.losses and len(hit) > 1:
            reason = (
                f"node {node_id}: {len(on_node)} agent actors lost in {_minutes(rules.loss_window_s)} "
                f"({', '.join(sorted(hit))})"
            )
            targets = sorted({agent_id, *node_agents})
            return [v for a in targets if (v := self._verdict(a, node_id, QuarantineKind.LOST, reason, now))]
        if len(window.losses) >= rules.losses:
            reason = f"actor lost {len(window.losses)} times in {_minutes(rules.loss_window_s)}"
            verdict = self._verdict(agent_id, node_id, QuarantineKind.LOST, reason, now)
            return [verdict] if verdict else []
        return []

    def record_storage_errors(self, agent_id: str, node_id: str, count: int, now: float) -> list[Verdict]:
        """The agent's storage-error count as its inventory reports it (it restarts at 0 with the
        actor): quarantined when it grew by the threshold within the window."""
        rules = self.rules
        window = self._window(agent_id, node_id)
        if window.storage and count < window.storage[-1][1]:
            window.storage.clear()  # a restarted actor counts from zero again
        if not window.storage or count != window.storage[-1][1]:
            window.storage.append((now, count))
        # The oldest reading inside the window is kept as the base the growth is measured from.
        while len(window.storage) > 1 and window.storage[1][0] <= now - rules.storage_window_s:
            window.storage.popleft()
        grown = count - window.storage[0][1]
        # Errors every agent sees are the store's (an outage), not this agent's: it is blamed only
        # while another agent's count stayed still in the window.
        if grown >= rules.storage_errors and self._storage_fine_elsewhere(agent_id, now):
            reason = f"{grown} object-storage errors in {_minutes(rules.storage_window_s)}"
            verdict = self._verdict(agent_id, node_id, QuarantineKind.STORAGE, reason, now)
            return [verdict] if verdict else []
        return []

    def _storage_fine_elsewhere(self, agent_id: str, now: float) -> bool:
        since = now - self.rules.storage_window_s
        for other, window in self._agents.items():
            readings = [count for at, count in window.storage if at > since] or [
                count for _, count in list(window.storage)[-1:]
            ]
            if other != agent_id and readings and max(readings) == window.storage[0][1]:
                return True
        return False

    def _success(self, outcome: AttemptOutcome) -> list[Verdict]:
        model = outcome.work.model_id
        self._successes.setdefault(model, {})[outcome.agent_id] = outcome.at
        # The success may be what shows other agents' recent failures of the model to be theirs.
        verdicts = [
            verdict
            for agent_id, window in self._agents.items()
            if agent_id != outcome.agent_id and any(o.work.model_id == model for o in window.failures)
            for verdict in self._judge_failures(agent_id, window, outcome.at)
        ]
        return verdicts + self._judge_speed(outcome)

    def _judge_speed(self, outcome: AttemptOutcome) -> list[Verdict]:
        model = outcome.work.model_id
        window = self._window(outcome.agent_id, outcome.node_id)
        rate = _seconds_per_unit(outcome)
        if rate is None:
            return []
        key = (model, outcome.gpu_name)
        others = [r for agent, r in self._speeds.get(key, ()) if agent != outcome.agent_id]
        speeds = self._speeds.setdefault(key, deque(maxlen=self.rules.speed_samples))
        speeds.append((outcome.agent_id, rate))
        if len(others) < self.rules.slow_reference:
            return []
        reference = statistics.median(others)
        if rate <= self.rules.slow_factor * reference:
            window.slow_streak = 0
            return []
        window.slow_streak += 1
        if window.slow_streak < self.rules.slow_jobs:
            return []
        reason = (
            f"rendered {rate / reference:.1f}x slower than other {outcome.gpu_name} agents on "
            f"{window.slow_streak} {model} jobs in a row"
        )
        verdict = self._verdict(outcome.agent_id, outcome.node_id, QuarantineKind.SLOW, reason, outcome.at)
        return [verdict] if verdict else []

    def _judge_failures(self, agent_id: str, window: _AgentWindow, now: float) -> list[Verdict]:
        _expire(window.failures, now - self.rules.failure_window_s, lambda o: o.at)
        # Only failures of models another agent rendered lately count: a model that fails
        # everywhere is the model's problem (or the jobs'), not this agent's.
        since = now - self.rules.success_memory_s
        blamed = [o for o in window.failures if self._succeeded_elsewhere(o.work.model_id, agent_id, since)]
        if len(blamed) < self.rules.failures:
            return []
        models = sorted({o.work.model_id for o in blamed})
        last = (blamed[-1].error or "no error given").splitlines()[0][:160]
        reason = (
            f"{len(blamed)} failed attempts in {_minutes(self.rules.failure_window_s)} of models other "
            f"agents rendered ({', '.join(models)}); last: {last}"
        )
        verdict = self._verdict(agent_id, window.node_id, QuarantineKind.FAILURES, reason, now)
        return [verdict] if verdict else []

    def _succeeded_elsewhere(self, model: str, agent_id: str, since: float) -> bool:
        return any(at >= since for agent, at in self._successes.get(model, {}).items() if agent != agent_id)

    def _verdict(
        self, agent_id: str, node_id: str, kind: QuarantineKind, reason: str, now: float
    ) -> Verdict | None:
        if agent_id in self._held:
            return None
        self._held.add(agent_id)
        return Verdict(agent_id, node_id, kind, reason, now)

    def _window(self, agent_id: str, node_id: str) -> _AgentWindow:
        window = self._agents.get(agent_id)
        if window is None:
            window = self._agents[agent_id] = _AgentWindow(node_id)
        return window


def _expire(items: deque[_T], before: float, at: Callable[[_T], float]) -> None:
    """Drop the oldest items whose time (`at`) is before `before`."""
    while items and at(items[0]) < before:
        items.popleft()


def _seconds_per_unit(outcome: AttemptOutcome) -> float | None:
    """Render seconds per pixel-frame-step-output: jobs of one model and sizes compare."""
    work = outcome.work
    units = work.width * work.height * work.frames * work.steps * work.batch
    if outcome.render_seconds <= 0 or units <= 0:
        return None
    return outcome.render_seconds / units


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min"
