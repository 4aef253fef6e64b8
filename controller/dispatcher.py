"""The dispatch loop: read agents' events into the store, then snapshot, place, and apply.

Each round: (1) for every running job, read its agent's new events and write them; a job whose
agent is lost goes back to the queue (not charged to the job if this controller never saw that
attempt alive: the farm's own restart lost it); (2) pass cancel requests on; (3) build a
snapshot, ask the policy, write each assignment to the store *before* telling the agent. The
store is the truth: which agents are busy is read from it, so a restarted controller carries on
where it stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from controller.jobs import JobRecord, JobState
from controller.metrics import FarmMetrics
from controller.ray_cluster import AgentLost
from controller.registry import AgentEntry, AgentRegistry
from controller.store import JobStore, StoreError
from gpu_agent.messages import AgentEvent, AgentInventory, EventKind, RenderTask
from models.profiles import Profile
from scheduler.policies import Policy
from scheduler.snapshot import AgentView, Observation, PendingJob, Snapshot

log = logging.getLogger(__name__)
# The head of the queue a round considers: enough to fill every agent many times over, while a
# queue of 10,000 jobs costs a round no more than this.
PLACEMENT_WINDOW = 2000


class Dispatcher:
    def __init__(
        self,
        store: JobStore,
        registry: AgentRegistry,
        policy: Policy,
        clock: Callable[[], float] = time.time,
        refresh_every_s: float = 2.0,
        metrics: FarmMetrics | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.policy = policy
        self.clock = clock
        self.refresh_every_s = refresh_every_s
        self.metrics = metrics or FarmMetrics()
        self._last_refresh = 0.0
        self._placed_at_seq = -1  # the store's event seq when placement last ran
        # (job id, attempt) found running when this controller started and not yet seen alive on
        # its agent; None until the first round reads them.
        self._found_at_start: set[tuple[str, int]] | None = None
        self.last_round_s = 0.0  # how long the last round took, for metrics

    def run(self, stop: threading.Event, interval_s: float = 0.05) -> None:
        """Run rounds until `stop` is set; a failing round is logged, never fatal."""
        while not stop.is_set():
            pause = interval_s
            try:
                self.tick()
            except StoreError as error:
                # A store that refuses writes stays so until a restart: say it every few seconds.
                log.error("dispatch round refused by the job store: %s", error)
                pause = max(interval_s, self.refresh_every_s)
            except Exception:
                log.exception("dispatch round failed")
            stop.wait(pause)

    def tick(self) -> None:
        started = time.monotonic()
        refreshed = started - self._last_refresh >= self.refresh_every_s
        if refreshed:
            self._last_refresh = started
            for agent_id in self.registry.refresh():
                log.warning("agent %s lost", agent_id)
        self._follow_running()
        # Placement reads the queue: run it only when something changed (a submission, a job's
        # end, a cancel: each writes an event) or the pool may have, not on every short round.
        seq = self.store.latest_seq()
        if refreshed or seq != self._placed_at_seq:
            self._placed_at_seq = seq
            self._place()
        self.last_round_s = time.monotonic() - started
        self.metrics.round_seconds.observe(self.last_round_s)

    def _follow_running(self) -> None:
        running = self.store.running()
        if self._found_at_start is None:
            self._found_at_start = {(job.id, job.attempts) for job in running}
        found_at_start = self._found_at_start
        for job in running:
            attempt = (job.id, job.attempts)
            # A killed controller's Ray (and agents) may have died with it: an attempt lost before
            # this controller saw it alive is the farm's loss, not the job's.
            self._follow(job, charged=attempt not in found_at_start)
            if self._alive(job):
                found_at_start.discard(attempt)

    def _follow(self, job: JobRecord, charged: bool) -> None:
        """Write the agent's news of the job's attempt; queue the job again if the attempt is lost."""
        entry = self.registry.get(job.agent_id)
        if entry is None:
            self._requeue(job.id, job.attempts, job.agent_id or "?", "agent lost", charged)
            return
        try:
            if job.cancel_requested:
                entry.handle.cancel(job.id, job.attempts)
            events = entry.handle.events(entry.last_seq)
        except AgentLost as error:
            self.registry.drop(entry.inventory.agent_id)
            self._requeue(job.id, job.attempts, entry.inventory.agent_id, str(error), charged)
            return
        for event in events:
            entry.last_seq = max(entry.last_seq, event.seq)
            if event.job_id == job.id and event.attempt == job.attempts:
                self._apply(job, event)
                if event.kind.final:
                    self._learn(job, entry, event)
                    self._reinventory(entry)
        if not events and not _still_running(entry.inventory, job):
            # The agent neither runs this attempt nor has its ending: it restarted or never got it.
            agent_id = entry.inventory.agent_id
            self._requeue(job.id, job.attempts, agent_id, "agent dropped the task", charged)

    def _alive(self, job: JobRecord) -> bool:
        entry = self.registry.get(job.agent_id)
        return entry is not None and _still_running(entry.inventory, job)

    def _requeue(self, job_id: str, attempt: int, agent_id: str, reason: str, charged: bool = True) -> None:
        if not charged:
            reason = f"the farm restarted ({reason})"
        job = self.store.requeue(job_id, attempt, agent_id, reason, self.clock(), charged)
        if job is not None and job.state is JobState.QUEUED:
            self.metrics.jobs_retried.labels(job.model_id).inc()

    def _learn(self, job: JobRecord, entry: AgentEntry, event: AgentEvent) -> None:
        # What really happened corrects the policy's speed and memory estimates.
        out_of_memory = event.kind is EventKind.FAILED and "OutOfMemory" in (event.error or "")
        if event.kind is EventKind.SUCCEEDED:
            self.metrics.record_finished_attempt(event, job.model_id, entry.inventory)
        elif not out_of_memory:
            return
        observation = Observation(
            job_id=job.id,
            model_id=job.model_id,
            gpu_name=entry.inventory.gpu_name,
            profile=Profile.parse(job.profile or "4"),
            width=job.width,
            height=job.height,
            frames=job.frames,
            steps=job.steps,
            batch=job.batch,
            render_seconds=event.render_seconds,
            load_seconds=event.load_seconds,
            peak_vram_bytes=event.peak_vram_bytes or None,
            out_of_memory=out_of_memory,
            owner=job.owner,
            finished_at=self.clock(),
        )
        self.policy.observe(observation)

    def _reinventory(self, entry: AgentEntry) -> None:
        # A finished job changes what the agent holds (hot model, cache): the next placement in
        # this same round must see it, not the view of the last periodic refresh.
        try:
            entry.inventory = entry.handle.inventory()
        except AgentLost:
            self.registry.drop(entry.inventory.agent_id)

    def _apply(self, job: JobRecord, event: AgentEvent) -> None:
        now = self.clock()
        if event.kind is EventKind.PROGRESS:
            self.store.record_progress(job.id, job.attempts, event.step, event.total, event.phase, now)
        elif event.kind is EventKind.OUTPUT and event.output_key:
            self.store.add_output(job.id, job.attempts, event.output_key, now)
        elif event.kind.final:
            state = {
                EventKind.SUCCEEDED: JobState.SUCCEEDED,
                EventKind.FAILED: JobState.FAILED,
                EventKind.CANCELED: JobState.CANCELED,
            }[event.kind]
            self.store.finish(job.id, job.attempts, state, event.error, now)

    def _place(self) -> None:
        if not self.registry.entries():
            return
        queued = self.store.queued(limit=PLACEMENT_WINDOW)
        if not queued:
            return
        running = {job.agent_id: job for job in self.store.running()}
        entries = {e.inventory.agent_id: e for e in self.registry.entries()}
        snapshot = Snapshot(
            now=self.clock(),
            agents=tuple(
                agent_view(e.inventory, running.get(e.inventory.agent_id)) for e in entries.values()
            ),
            pending=tuple(_pending(job) for job in queued),
        )
        decisions = self.policy.place(snapshot)
        queued_since = {job.id: job.updated_at for job in queued}  # when each last entered the queue
        for kind, count in (
            ("assignment", len(decisions.assignments)),
            ("prefetch", len(decisions.prefetches)),
            ("waiting", len(decisions.waiting)),
        ):
            self.metrics.decisions.labels(kind).inc(count)
        for assignment in decisions.assignments:
            self._start(
                assignment.job_id,
                entries[assignment.agent_id],
                assignment.profile.value,
                assignment.est_finish,
                queued_since[assignment.job_id],
            )
        for waiting in decisions.waiting:
            self.store.set_wait(waiting.job_id, waiting.reason, waiting.eta)
        for prefetch in decisions.prefetches:
            entries[prefetch.agent_id].handle.prefetch(prefetch.model_id)

    def _start(self, job_id: str, entry: AgentEntry, profile: str, eta: float, queued_since: float) -> None:
        agent_id = entry.inventory.agent_id
        now = self.clock()
        job = self.store.start_attempt(job_id, agent_id, profile, eta, now)
        if job is None:  # canceled since the snapshot
            return
        self.metrics.queue_seconds.labels(job.model_id, entry.inventory.gpu_name).observe(
            max(now - queued_since, 0.0)
        )
        try:
            started = entry.handle.start(RenderTask(job.id, job.attempts, job.settings, profile))
        except AgentLost as error:
            self.registry.drop(agent_id)
            self._requeue(job.id, job.attempts, agent_id, str(error))
            return
        if not started:
            self._requeue(job.id, job.attempts, agent_id, "agent was busy")
            return
        # Until the next refresh, the registry's view must already show the agent on this attempt.
        entry.inventory = replace(entry.inventory, current_job=job.id, current_attempt=job.attempts)


def _still_running(inventory: AgentInventory, job: JobRecord) -> bool:
    return inventory.current_job == job.id and inventory.current_attempt == job.attempts


def agent_view(inventory: AgentInventory, running: JobRecord | None) -> AgentView:
    return AgentView(
        agent_id=inventory.agent_id,
        node_id=inventory.node_id,
        gpu_name=inventory.gpu_name,
        arch=inventory.arch,
        capability=inventory.capability,
        vram_total=inventory.vram_total,
        vram_free=inventory.vram_free,
        ram_total=inventory.ram_total,
        ram_free=inventory.ram_free,
        disk_free=inventory.disk_free,
        half_tflops=inventory.half_tflops,
        hot_model=inventory.hot_model,
        cached_models=frozenset(inventory.cached_models),
        busy_until=(running.eta or running.updated_at) if running else None,
        declared=inventory.declared,
        running_model=running.model_id if running else None,
        running_owner=running.owner if running else None,
    )


def _pending(job: JobRecord) -> PendingJob:
    return PendingJob(
        job_id=job.id,
        model_id=job.model_id,
        width=job.width,
        height=job.height,
        frames=job.frames,
        steps=job.steps,
        priority=job.priority,
        owner=job.owner,
        submitted_at=job.created_at,
        batch=job.batch,
        attempts=job.attempts,
        avoid_agents=frozenset(job.avoid_agents),
    )
