"""Quarantine applied: what the dispatcher tells the rules (scheduler.quarantine), the verdicts kept
in the job store, probe jobs on quarantined agents, and releases.

The dispatcher's thread records outcomes and starts probes; the API's threads read the book and
release agents. One lock guards the book (the rows and the rules' windows) and is never held while
the store is called: the dispatcher calls in here inside a store batch, which holds the store's own
lock, and a release from the API must not take the two in the other order.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import replace

from controller.jobs import JobRecord, NewJob
from controller.schemas import QuarantineOut, ReleasedOut
from controller.service_error import ServiceError
from controller.store import JobStore, QuarantineRow
from gpu_agent.messages import AgentEvent, AgentInventory, EventKind
from models.attachments import Attachments
from models.overrides import stored_overrides
from models.profiles import SPEED_ORDER, Profile
from models.settings import parse_settings, resolve
from scheduler.catalogue_lookup import CatalogueLookup
from scheduler.feasibility import choose_profile, pool_refusal
from scheduler.quarantine import (
    AttemptOutcome,
    QuarantineRules,
    QuarantineTracker,
    Verdict,
    probe_wait,
    retry_elsewhere,
)
from scheduler.snapshot import AgentView

log = logging.getLogger(__name__)
# Probe jobs are the farm's, not a user's: this owner names them in listings (admins see them;
# users, who list only their own jobs, never do).
PROBE_OWNER = "wanfarm-probe"
# A probe renders the tiny Wan model (random weights, built in memory, on any agent) in seconds.
PROBE_SETTINGS = {"model_type": "wan-tiny", "prompt": "wanfarm probe", "seed": 1, "video_length": 9}


class QuarantineBook:
    """The quarantined agents, as the store keeps them, and the rules' running windows."""

    def __init__(
        self, store: JobStore, clock: Callable[[], float], rules: QuarantineRules | None = None
    ) -> None:
        self.store = store
        self.clock = clock
        self.rules = rules or QuarantineRules()
        self._tracker = QuarantineTracker(self.rules)
        self._lock = threading.Lock()
        self._rows = {row.agent_id: _without_ended_probe(store, row) for row in store.quarantines()}
        self._tracker.hold(self._rows)
        self._catalogue = CatalogueLookup()

    # -- reads (any thread) ---------------------------------------------------------------------

    def holds(self, agent_id: str | None) -> bool:
        with self._lock:
            return agent_id in self._rows

    def rows(self) -> dict[str, QuarantineRow]:
        with self._lock:
            return dict(self._rows)

    def release(self, agent_id: str) -> bool:
        """End an agent's quarantine (an admin's call, or its probe succeeded); whether it had one."""
        with self._lock:
            if self._rows.pop(agent_id, None) is None:
                return False
            self._tracker.release(agent_id)
        self.store.release_quarantine(agent_id)
        log.warning("agent %s released from quarantine", agent_id)
        return True

    # -- what the dispatcher tells it ------------------------------------------------------------

    def attempt_ended(self, job: JobRecord, inventory: AgentInventory, event: AgentEvent) -> None:
        """A user's attempt succeeded or failed on this agent (probes are judged by `probe_ended`)."""
        if is_probe(job) or event.kind not in (EventKind.SUCCEEDED, EventKind.FAILED):
            return
        outcome = AttemptOutcome(
            agent_id=inventory.agent_id,
            node_id=inventory.node_id,
            gpu_name=inventory.gpu_name,
            work=job.work,
            at=self.clock(),
            succeeded=event.kind is EventKind.SUCCEEDED,
            render_seconds=event.render_seconds,
            error=event.error,
        )
        self._judge(lambda tracker: tracker.record_attempt(outcome))

    def agent_lost(self, agent_id: str, node_id: str, node_agents: Sequence[str]) -> None:
        now = self.clock()
        self._judge(lambda tracker: tracker.record_lost(agent_id, node_id, node_agents, now))

    def inventories_read(self, inventories: Iterable[AgentInventory]) -> None:
        """Agents' storage-error counts, as their inventories report them."""
        now = self.clock()
        counts = [(inv.agent_id, inv.node_id, inv.storage_errors) for inv in inventories]
        self._judge(
            lambda tracker: [v for a, n, c in counts for v in tracker.record_storage_errors(a, n, c, now)]
        )

    def retry_elsewhere(self, job: JobRecord, agent_id: str, others: Sequence[AgentView]) -> bool:
        """Whether a failed attempt of `job` on `agent_id` is queued again elsewhere, not charged:
        its first failure, while another agent (not avoided, not quarantined) could run it."""
        if is_probe(job):
            return False
        quarantined = self.rows()
        able = [
            view
            for view in others
            if view.agent_id != agent_id
            and view.agent_id not in job.avoid_agents
            and view.agent_id not in quarantined
        ]
        return retry_elsewhere(agent_id, self.store.failed_agents(job.id), self._can_run(job, able))

    # -- probes -----------------------------------------------------------------------------------

    def due_probes(self, idle: Iterable[str]) -> list[QuarantineRow]:
        """Quarantined agents among `idle` whose next probe is due and none is running."""
        now = self.clock()
        rows = self.rows()
        return [
            row
            for agent_id in idle
            if (row := rows.get(agent_id)) is not None and row.probe_job is None and row.next_probe_at <= now
        ]

    def probe_profile(self, probe: JobRecord, agent: AgentView) -> Profile:
        """The profile a probe runs under on `agent`: the fastest that fits (the tiny model fits)."""
        preset = self._catalogue.preset(probe.model_id)
        chosen = choose_profile(preset, probe.work, agent) if preset is not None else None
        return chosen or SPEED_ORDER[-1]

    def probe_started(self, agent_id: str, job_id: str) -> None:
        self._update(agent_id, lambda row: replace(row, probe_job=job_id))

    def probe_ended(self, job: JobRecord, succeeded: bool) -> None:
        """A probe ended (or never started): release its agent, or wait longer before the next."""
        agent_id = job.agent_id or ""
        row = self.rows().get(agent_id)
        if row is None or row.probe_job != job.id:
            return
        if succeeded:
            self.release(agent_id)
            return
        failed = row.probes_failed + 1
        wait = probe_wait(self.rules, failed)
        self._update(
            agent_id,
            lambda r: replace(r, probes_failed=failed, next_probe_at=self.clock() + wait, probe_job=None),
        )
        log.warning("probe %s failed on quarantined agent %s: next probe in %.0f s", job.id, agent_id, wait)

    # -- helpers --------------------------------------------------------------------------------

    def _judge(self, rule: Callable[[QuarantineTracker], list[Verdict]]) -> None:
        with self._lock:
            verdicts = rule(self._tracker)
        for verdict in verdicts:
            row = QuarantineRow(
                agent_id=verdict.agent_id,
                node_id=verdict.node_id,
                kind=verdict.kind.value,
                reason=verdict.reason,
                since=verdict.since,
                next_probe_at=verdict.since + probe_wait(self.rules, 0),
            )
            self.store.put_quarantine(row)
            with self._lock:
                self._rows[row.agent_id] = row
            log.warning("agent %s quarantined: %s", verdict.agent_id, verdict.reason)

    def _update(self, agent_id: str, change: Callable[[QuarantineRow], QuarantineRow]) -> None:
        with self._lock:
            row = self._rows.get(agent_id)
            if row is None:
                return  # released meanwhile
            row = change(row)
        self.store.put_quarantine(row)
        with self._lock:
            still_held = agent_id in self._rows
            if still_held:
                self._rows[agent_id] = row
        if not still_held:
            self.store.release_quarantine(agent_id)  # released while it was written: undone

    def _can_run(self, job: JobRecord, agents: list[AgentView]) -> bool:
        preset = self._catalogue.preset(job.model_id)
        if preset is None or not agents:
            return False
        settings = job.settings
        forced = stored_overrides(
            settings.get("override_profile"), settings.get("override_attention"), list(job.plugins)
        )
        return pool_refusal(preset, job.work, agents, forced) is None


def release_agent(book: QuarantineBook, known: Collection[str], agent_id: str) -> ReleasedOut:
    """An admin's release: 404 for an agent neither in the pool nor quarantined, 409 for one not
    quarantined."""
    row = book.rows().get(agent_id)
    if row is None and agent_id not in known:
        raise ServiceError(404, f"no agent {agent_id!r}", hint="GET /v1/agents lists them")
    if row is None or not book.release(agent_id):
        raise ServiceError(409, f"agent {agent_id!r} is not quarantined")
    return ReleasedOut(agent_id=agent_id, released=quarantine_out(row))


def quarantine_out(row: QuarantineRow) -> QuarantineOut:
    return QuarantineOut(
        kind=row.kind,
        reason=row.reason,
        since=row.since,
        probes_failed=row.probes_failed,
        next_probe_at=row.next_probe_at,
    )


def _without_ended_probe(store: JobStore, row: QuarantineRow) -> QuarantineRow:
    """The row as read at start, its probe forgotten if that job ended while no controller ran."""
    if row.probe_job is None:
        return row
    job = store.get(row.probe_job)
    if job is not None and not job.state.finished:
        return row
    return replace(row, probe_job=None)


def is_probe(job: JobRecord) -> bool:
    return job.owner == PROBE_OWNER


def probe_job() -> NewJob:
    """A probe: the tiny model at the top priority, one attempt (a failure is the agent's answer)."""
    work = resolve(parse_settings(PROBE_SETTINGS), Attachments.refused()).work
    return NewJob(PROBE_OWNER, 100, dict(PROBE_SETTINGS), work, max_attempts=1)
