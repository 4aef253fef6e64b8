"""The dispatch loop: read agents' events into the store, then snapshot, place, and apply.

Each round: (1) pass cancel requests on and read the new events of every agent holding a running
job, each a single wait over all agents, and write them (a round's progress in one transaction);
a job whose agent is lost goes back to the queue (not charged to the job if this controller never
saw that attempt alive: the farm's own restart lost it); (2) when a job changed state since the
last look (a submission, a start, an end, a cancel) or at a refresh, build a snapshot, ask the
policy, and write each assignment to the store *before* telling the agents, all at once. The store
is the truth: which agents are busy is read from it, so a restarted controller carries on where it
stopped. A round reads only the slots (id, attempt) of the running jobs and of the queue's window;
full records are read once per attempt or stay in the queue, so a round's cost does not grow with
the queue beyond the window.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from controller.autoscale import Autoscaler
from controller.eta_honesty import EtaHonesty
from controller.jobs import JobEvent, JobProgress, JobRecord, JobState
from controller.metrics import FarmMetrics
from controller.preemptions import ReportedStep, ReportedSteps, send_preemptions
from controller.quarantine import QuarantineBook, is_probe, probe_job
from controller.ray_cluster import EventPoll, TaskCancel, TaskStart
from controller.registry import AgentEntry, AgentRegistry
from controller.steps_redone import StepsReached
from controller.store import AttemptStart, JobStore, ProgressUpdate, QueuedJob, QueuedWait, StoreError
from gpu_agent.messages import AgentEvent, AgentInventory, EventKind, RenderTask
from models.progress import Phase
from scheduler.policy import Policy
from scheduler.snapshot import (
    AgentView,
    Assignment,
    Decisions,
    Observation,
    PendingJob,
    Preemption,
    Snapshot,
    Waiting,
)

log = logging.getLogger(__name__)
# The head of the queue a round considers: enough to fill every agent many times over, while a
# queue of 10,000 jobs costs a round no more than this.
PLACEMENT_WINDOW = 2000
FINAL_STATES = {
    EventKind.SUCCEEDED: JobState.SUCCEEDED,
    EventKind.FAILED: JobState.FAILED,
    EventKind.CANCELED: JobState.CANCELED,
}
# Phases after the GPU's part: an agent whose only task reached one may take the next.
AFTER_GPU = frozenset({Phase.ENCODING.value, Phase.DONE.value})
# A waiting job's ETA is written again once it moved by a second or 2% of the wait left, whichever
# is more: not every placement for each of 2,000 jobs whose ETAs shift as the jobs ahead end.
ETA_SLACK_S, ETA_SLACK_SHARE = 1.0, 0.02
WAITS_PER_ROUND = 250  # waits written in one commit
# How often a placement runs while no agent has room (it can only rewrite waits and prefetch).
BUSY_PLACEMENT_EVERY_S = 0.5
# State events a round looks through to decide whether placement is due; past this many, it is.
STATE_EVENTS_LOOKED_AT = 100


class Dispatcher:
    def __init__(
        self,
        store: JobStore,
        registry: AgentRegistry,
        policy: Policy,
        clock: Callable[[], float] = time.time,
        refresh_every_s: float = 2.0,
        metrics: FarmMetrics | None = None,
        quarantine: QuarantineBook | None = None,
        autoscaler: Autoscaler | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.policy = policy
        self.clock = clock
        self.refresh_every_s = refresh_every_s
        self.metrics = metrics or FarmMetrics()
        self.quarantine = quarantine or QuarantineBook(store, clock)  # agents kept from new work
        self.autoscaler = autoscaler  # None: the pool is as the cluster's nodes make it
        self._last_refresh = 0.0
        self._place_due = False  # placement is owed to a later round
        self._last_place = -BUSY_PLACEMENT_EVERY_S  # monotonic time of the last placement
        self._room_made = False  # an agent's job left the GPU this round: it takes one more
        self._waits: dict[str, QueuedWait] = {}  # changed by placements, not yet written
        self._seen_seq = -1  # the store's event seq when the last round looked for changes
        self._started: set[str] = set()  # jobs this dispatcher started since that look
        # (job id, attempt) found running when this controller started and not yet seen alive on
        # its agent; None until the first round reads them.
        self._found_at_start: set[tuple[str, int]] | None = None
        self._records = _Records(store)
        self._ended: set[tuple[str, int]] = set()  # attempts this round ended or queued again
        self._views = _Views()
        self._reached = StepsReached()  # how far each job's attempts got, for steps redone
        self._steps = ReportedSteps()  # running attempts' denoising steps, as the views show them
        self.last_round_s = 0.0  # how long the last round took, for metrics
        self._eta_honesty = EtaHonesty(self.metrics.eta_error)

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
        pool_changed = refreshed and self._refresh()
        self._write_waits()
        running = self._follow_running()
        self._drain(running)
        self._probe(running)
        room_made, self._room_made = self._room_made, False
        due = self._jobs_changed_state() or pool_changed or self._place_due or room_made
        # With every agent full a placement starts nothing, it only rewrites waits: while
        # submissions pour in, at most one such placement per BUSY_PLACEMENT_EVERY_S.
        place = due and (self._room() or started - self._last_place >= BUSY_PLACEMENT_EVERY_S)
        # A refresh that changed no agent calls for placement (time has passed) in the next round:
        # the two together would double a round's cost.
        self._place_due = (refreshed or due) and not place
        if place:
            self._last_place = started
            self._place(running)
        self.last_round_s = time.monotonic() - started
        self.metrics.round_seconds.observe(self.last_round_s)

    def _room(self) -> bool:
        """Whether some agent would take a job now: idle, or its only job has left the GPU."""
        held = self.quarantine.rows()
        return any(
            (e.inventory.current_job is None or e.inventory.accepts_next) and e.inventory.agent_id not in held
            for e in self.registry.entries()
        )

    def _refresh(self) -> bool:
        """Refresh the registry; whether an agent came or went."""
        self._last_refresh = time.monotonic()
        before = {entry.inventory.agent_id: entry.inventory.node_id for entry in self.registry.entries()}
        lost = self.registry.refresh()
        for agent_id in lost:
            log.warning("agent %s lost", agent_id)
            self._agent_lost(agent_id, before.get(agent_id, "?"))
        self.quarantine.inventories_read(entry.inventory for entry in self.registry.entries())
        return bool(lost) or before.keys() != {entry.inventory.agent_id for entry in self.registry.entries()}

    def _jobs_changed_state(self) -> bool:
        """Whether placement is due: a job changed state (a submission, an end, a cancel, a requeue)
        since the last look. Progress is not a reason, nor the starts the last placement made
        itself (it saw the queue without them); the pool's changes come with the refresh."""
        seq = self.store.latest_seq()
        own, self._started = self._started, set()
        if seq == self._seen_seq:
            return False
        events = self.store.state_events_since(self._seen_seq, STATE_EVENTS_LOOKED_AT)
        self._seen_seq = seq
        return len(events) == STATE_EVENTS_LOOKED_AT or any(not _own_start(e, own) for e in events)

    def _follow_running(self) -> list[JobRecord]:
        """Follow every running attempt; those still running after it."""
        self._ended = set()
        running = self._records.running()
        if self._found_at_start is None:
            self._found_at_start = {(job.id, job.attempts) for job in running}
        by_agent: dict[str, list[JobRecord]] = {}
        for job in running:
            entry = self.registry.get(job.agent_id)
            if entry is None:
                self._requeue(job, job.agent_id or "?", "agent lost")
            else:
                by_agent.setdefault(entry.inventory.agent_id, []).append(job)
        self._pass_cancels(by_agent)
        self._read_events(by_agent)
        if self._found_at_start:
            for job in running:
                if self._alive(job):
                    # A killed controller's Ray (and agents) may have died with it: an attempt lost
                    # before this controller saw it alive is the farm's loss, not the job's.
                    self._found_at_start.discard((job.id, job.attempts))
        return [job for job in running if (job.id, job.attempts) not in self._ended]

    def _pass_cancels(self, by_agent: dict[str, list[JobRecord]]) -> None:
        cancels = [
            TaskCancel(self._entry(agent_id).handle, job.id, job.attempts)
            for agent_id, jobs in by_agent.items()
            for job in jobs
            if job.cancel_requested
        ]
        answers = self.registry.cluster.cancel_tasks(cancels)
        for cancel in cancels:
            error = answers.lost.get(cancel.job_id)
            agent_id = cancel.handle.agent_id
            if error is not None and agent_id in by_agent:
                self._lose(agent_id, by_agent.pop(agent_id), str(error))

    def _read_events(self, by_agent: dict[str, list[JobRecord]]) -> None:
        """Write every agent's news of its attempts; queue again the attempts of a lost agent."""
        entries = {agent_id: self._entry(agent_id) for agent_id in by_agent}
        answers = self.registry.cluster.events(EventPoll(e.handle, e.last_seq) for e in entries.values())
        for agent_id, error in answers.lost.items():
            self._lose(agent_id, by_agent[agent_id], str(error))
        progress: list[ProgressUpdate] = []
        news: list[_News] = []
        reread: list[AgentEntry] = []
        for agent_id, events in answers.answered.items():
            entry = entries[agent_id]
            if self._sort_events(entry, by_agent[agent_id], events, progress, news):
                reread.append(entry)
        # Every progress event precedes its attempt's outputs and end: written first; the round's
        # progress, outputs and ends are one commit.
        if progress or news:
            with self.store.batch():
                self.store.record_progress_many(progress, self.clock())
                for item in news:
                    self._apply(item)
        # An ended or encoding job changes what the agent holds (hot model, cache, room for one
        # more): the next placement in this same round must see it, not the last refresh's view.
        self.registry.reinventory(reread)
        self._room_made = any(entry.inventory.accepts_next for entry in reread)

    def _sort_events(
        self,
        entry: AgentEntry,
        jobs: list[JobRecord],
        events: list[AgentEvent],
        progress: list[ProgressUpdate],
        news: list[_News],
    ) -> bool:
        """File one agent's events of these attempts; whether its inventory must be read anew."""
        if not events:
            for job in jobs:
                if not _holds(entry.inventory, job):
                    # The agent neither runs this attempt nor has its ending: it restarted or never got it.
                    self._requeue(job, entry.inventory.agent_id, "agent dropped the task")
            return False
        attempts = {(job.id, job.attempts): job for job in jobs}
        reread = False
        for event in events:
            entry.last_seq = max(entry.last_seq, event.seq)
            held = attempts.get((event.job_id, event.attempt))
            if held is None:
                continue
            if event.kind is EventKind.PROGRESS:
                progress.append(ProgressUpdate(held.id, held.attempts, _progress(event)))
                if event.phase == Phase.DENOISING.value:
                    self._reached.progress(held.id, event.step)
                self._steps.note(held.id, held.attempts, event.step, event.total, event.phase, self.clock())
            else:
                news.append(_News(held, entry, event))
            reread = reread or event.kind.final or (len(jobs) == 1 and _after_gpu(event))
        return reread

    def _apply(self, news: _News) -> None:
        job, event = news.job, news.event
        now = self.clock()
        if event.kind.final:
            self._count_steps(job, event)
        if event.kind is EventKind.OUTPUT and event.output_key:
            self.store.add_output(job.id, job.attempts, event.output_key, now)
        elif event.kind is EventKind.WINDOW:
            # A long video's window is stored: the job queues for the next one, not charged.
            agent_id = news.entry.inventory.agent_id
            self.store.next_window(job.id, job.attempts, agent_id, event.step, event.total, now)
            self._ended.add((job.id, job.attempts))
            self._records.forget(job.id)
            self._learn(job, news.entry, event)
        elif event.kind is EventKind.PREEMPTED:
            # Stopped for a job of a higher priority: queued again with its progress, not charged.
            agent_id = news.entry.inventory.agent_id
            drained = agent_id in self.registry.draining()
            requeued = self.store.preempted(
                job.id, job.attempts, agent_id, event.step, event.total, now, drained=drained
            )
            self._ended.add((job.id, job.attempts))
            self._records.forget(job.id)
            if requeued is not None and not drained:
                self.metrics.preemptions.labels(job.model_id).inc()
        elif event.kind.final:
            agent_id = news.entry.inventory.agent_id
            self.quarantine.attempt_ended(job, news.entry.inventory, event)
            failed = event.kind is EventKind.FAILED
            if not (failed and self._retry_elsewhere(job, agent_id, event.error or "failed")):
                ended = self.store.finish(job.id, job.attempts, FINAL_STATES[event.kind], event.error, now)
                if ended is not None and not is_probe(ended):
                    self._eta_honesty.finished(ended)
                self._reached.forget(job.id)
            if is_probe(job):
                self.quarantine.probe_ended(job, event.kind is EventKind.SUCCEEDED)
            self._ended.add((job.id, job.attempts))
            self._learn(job, news.entry, event)

    def _count_steps(self, job: JobRecord, event: AgentEvent) -> None:
        """An ended attempt's checkpoints: what writing them cost, the steps it ran again."""
        # A failed attempt may be retried elsewhere (quarantine's rules): forgotten if it is not.
        going_on = event.kind in (EventKind.PREEMPTED, EventKind.FAILED)
        steps = self._reached.ended(job.id, event.resumed_from, going_on)
        self.metrics.record_checkpoints(event, job.model_id, steps.redone, steps.resumed)

    def _alive(self, job: JobRecord) -> bool:
        entry = self.registry.get(job.agent_id)
        return entry is not None and _holds(entry.inventory, job)

    def _entry(self, agent_id: str) -> AgentEntry:
        entry = self.registry.get(agent_id)
        assert entry is not None, agent_id  # callers group jobs by agents the registry holds
        return entry

    def _lose(self, agent_id: str, jobs: list[JobRecord], reason: str) -> None:
        entry = self.registry.get(agent_id)
        self.registry.drop(agent_id)
        if entry is not None:
            self._agent_lost(agent_id, entry.inventory.node_id)
        for job in jobs:
            self._requeue(job, agent_id, reason)

    def _agent_lost(self, agent_id: str, node_id: str) -> None:
        node_agents = [
            e.inventory.agent_id for e in self.registry.entries() if e.inventory.node_id == node_id
        ]
        self.quarantine.agent_lost(agent_id, node_id, node_agents)

    def _retry_elsewhere(self, job: JobRecord, agent_id: str, error: str) -> bool:
        """Queue a failed attempt again on another agent, not charged, when the rules blame its
        agent (scheduler.quarantine.retry_elsewhere); whether it did."""
        others = [agent_view(e.inventory, None) for e in self.registry.entries()]
        if not self.quarantine.retry_elsewhere(job, agent_id, others):
            return False
        requeued = self.store.retry_elsewhere(job.id, job.attempts, agent_id, error, self.clock())
        self._records.forget(job.id)
        if requeued is not None and requeued.state is JobState.QUEUED:
            self.metrics.jobs_retried.labels(requeued.model_id).inc()
        return True

    def _drain(self, running: list[JobRecord]) -> None:
        """Stop the job of each draining agent at its next step boundary (unless it may finish), and
        let each draining agent that holds no job go."""
        draining = self.registry.draining()
        if not draining:
            return
        jobs: dict[str, list[JobRecord]] = {}
        for job in running:
            jobs.setdefault(job.agent_id or "", []).append(job)
        entries = {agent_id: e for agent_id in draining if (e := self.registry.get(agent_id)) is not None}
        stops = [
            Preemption(job.id, agent_id, "", "its agent is drained")
            for agent_id, entry in entries.items()
            if not draining[agent_id]
            for job in jobs.get(agent_id, [])
            if not job.preempt_requested
        ]
        if stops:
            send_preemptions(self.store, self.registry, entries, running, stops, self.clock())
        classes = self.registry.agent_classes()
        for agent_id in draining:
            if not jobs.get(agent_id):
                log.info("agent %s drained", agent_id)
                self.registry.release(agent_id, "drained")
                if self.autoscaler is not None:
                    self.autoscaler.count_release(classes.get(agent_id, ""), "drained")
                else:
                    self.metrics.agents_released.labels(classes.get(agent_id, ""), "drained").inc()

    def _probe(self, running: list[JobRecord]) -> None:
        """Start a probe job on each quarantined agent that runs nothing and whose probe is due."""
        if not self.quarantine.rows():
            return  # the common case: nothing held, no pass over the pool
        busy = {job.agent_id for job in running}
        idle = [
            e.inventory.agent_id
            for e in self.registry.entries()
            if e.inventory.current_job is None and e.inventory.agent_id not in busy
        ]
        for row in self.quarantine.due_probes(idle):
            entry, now = self._entry(row.agent_id), self.clock()
            [probe] = self.store.add_jobs([probe_job()], now)
            profile = self.quarantine.probe_profile(probe, agent_view(entry.inventory, None))
            started = self.store.start_attempts([AttemptStart(probe.id, row.agent_id, profile, None)], now)
            if not started:
                continue
            job = started[0]
            self.quarantine.probe_started(row.agent_id, job.id)
            answers = self.registry.cluster.start_tasks([TaskStart(entry.handle, _task(job))])
            if answers.answered.get(job.id, False):
                entry.inventory = _holding(entry.inventory, job)
            else:
                error = str(answers.lost.get(job.id, "the agent did not take the probe"))
                self.store.finish(job.id, job.attempts, JobState.FAILED, error, now)
                self.quarantine.probe_ended(job, succeeded=False)

    def _requeue(
        self, job: JobRecord, agent_id: str, reason: str, charged: bool = True, avoid: bool | None = None
    ) -> None:
        if is_probe(job):
            # A probe is never placed elsewhere: losing it is its agent's answer.
            self.store.finish(job.id, job.attempts, JobState.FAILED, f"probe lost: {reason}", self.clock())
            self.quarantine.probe_ended(job, succeeded=False)
            self._ended.add((job.id, job.attempts))
            return
        if charged and (job.id, job.attempts) in (self._found_at_start or set()):
            charged, reason = False, f"the farm restarted ({reason})"
        requeued = self.store.requeue(job.id, job.attempts, agent_id, reason, self.clock(), charged, avoid)
        self._reached.lost(job.id)
        self._ended.add((job.id, job.attempts))
        self._records.forget(job.id)  # back in the queue, its record is another
        if requeued is not None and requeued.state is JobState.QUEUED:
            self.metrics.jobs_retried.labels(requeued.model_id).inc()

    def _learn(self, job: JobRecord, entry: AgentEntry, event: AgentEvent) -> None:
        # What really happened corrects the policy's speed and memory estimates.
        out_of_memory = event.kind is EventKind.FAILED and "OutOfMemory" in (event.error or "")
        if event.kind in (EventKind.SUCCEEDED, EventKind.WINDOW):  # a window is a whole render too
            self.metrics.record_finished_attempt(event, job.model_id, entry.inventory)
        elif not out_of_memory:
            return
        now = self.clock()
        observation = Observation(
            job_id=job.id,
            work=job.work,
            gpu_name=entry.inventory.gpu_name,
            profile=job.running_profile(),
            render_seconds=event.render_seconds,
            load_seconds=event.load_seconds,
            peak_vram_bytes=event.peak_vram_bytes or None,
            out_of_memory=out_of_memory,
            owner=job.owner,
            finished_at=now,
            wall_seconds=now - job.started_at if job.started_at is not None else None,
        )
        self.policy.observe(observation)

    def _place(self, running: list[JobRecord]) -> None:
        # Quarantined and draining agents get no new work; their jobs are followed.
        held = self.quarantine.rows().keys() | self.registry.draining().keys()
        entries = {
            e.inventory.agent_id: e for e in self.registry.entries() if e.inventory.agent_id not in held
        }
        # An autoscaled farm turns the queue into demand even with no agent, or no job, at all.
        if not entries and self.autoscaler is None:
            return
        queue = self._records.queue(PLACEMENT_WINDOW)
        if not queue and self.autoscaler is None:
            return
        by_agent: dict[str, list[JobRecord]] = {}
        for job in running:
            by_agent.setdefault(job.agent_id or "", []).append(job)
        self._steps.keep(running)
        snapshot = Snapshot(
            now=self.clock(),
            agents=self._views.of(entries, by_agent, self._steps, queue[0].pending.priority if queue else 0),
            pending=tuple(queued.pending for queued in queue),
        )
        if entries and queue:
            decisions = self.policy.place(snapshot)
        else:  # no agent to place on (an autoscaled pool at zero), or nothing to place
            decisions = Decisions(waiting=self.autoscaler.waits(snapshot) if self.autoscaler else ())
        if self.autoscaler is not None:
            self.autoscaler.round(snapshot, decisions)
        for kind, count in (
            ("assignment", len(decisions.assignments)),
            ("prefetch", len(decisions.prefetches)),
            ("waiting", len(decisions.waiting)),
            ("preemption", len(decisions.preemptions)),
        ):
            self.metrics.decisions.labels(kind).inc(count)
        in_line = {queued.pending.job_id: queued for queued in queue}
        self._start(decisions.assignments, entries, in_line)
        if decisions.preemptions:
            send_preemptions(self.store, self.registry, entries, running, decisions.preemptions, self.clock())
        self._set_waits(decisions.waiting, in_line, snapshot.now)
        for prefetch in decisions.prefetches:
            entries[prefetch.agent_id].handle.prefetch(prefetch.model_id)

    def _start(
        self,
        assignments: Sequence[Assignment],
        entries: dict[str, AgentEntry],
        in_line: dict[str, _Queued],
    ) -> None:
        """Write every assignment (one commit), then tell the agents, all at once; a refusal
        queues the job again."""
        now = self.clock()
        starts = [
            AttemptStart(a.job_id, a.agent_id, a.profile, a.est_finish, in_line[a.job_id].first_eta)
            for a in assignments
        ]
        started = self.store.start_attempts(
            starts, now
        )  # a job canceled since the snapshot is not among them
        self._started = {job.id for job in started}
        self._records.add_running(started)
        sent: dict[str, tuple[JobRecord, AgentEntry]] = {}
        for job in started:
            entry = entries[job.agent_id or ""]
            sent[job.id] = (job, entry)
            waited = max(now - in_line[job.id].queued_since, 0.0)
            self.metrics.queue_seconds.labels(job.model_id, entry.inventory.gpu_name).observe(waited)
        answers = self.registry.cluster.start_tasks(
            TaskStart(entry.handle, _task(job)) for job, entry in sent.values()
        )
        for job_id, (job, entry) in sent.items():
            agent_id = entry.inventory.agent_id
            if job_id in answers.lost:
                self.registry.drop(agent_id)
                self._requeue(job, agent_id, str(answers.lost[job_id]))
            elif not answers.answered.get(job_id, False):
                # It never started there: not charged, only avoided (found by the chaos suite: 14
                # jobs charged an attempt each by one busy agent in a run).
                self._requeue(job, agent_id, "agent was busy", charged=False, avoid=True)
            else:
                # Until the next refresh, the registry's view must already show the agent on it.
                entry.inventory = _holding(entry.inventory, job)

    def _set_waits(self, waiting: Iterable[Waiting], in_line: dict[str, _Queued], now: float) -> None:
        """Keep the waits that changed, for the next round to write in one commit."""
        for wait in waiting:
            queued = in_line[wait.job_id]
            if queued.first_eta is None:
                queued.first_eta = wait.eta
            if _moved(queued.wait, (wait.reason, wait.eta), now):
                queued.wait = (wait.reason, wait.eta)
                self._waits[wait.job_id] = QueuedWait(
                    wait.job_id, queued.pending.attempts, wait.reason, wait.eta, queued.first_eta
                )

    def _write_waits(self) -> None:
        # Placements' waits, from the next round on and a slice a round: a placement round carries
        # the policy's time, a policy may reword the wait of each of 2,000 jobs each time, and a
        # commit of them all would hold the store from submissions for tens of milliseconds.
        ids = list(itertools.islice(self._waits, WAITS_PER_ROUND))
        self.store.set_waits([self._waits.pop(job_id) for job_id in ids])


@dataclass(frozen=True)
class _News:
    """An agent's event that ends an attempt or adds an output to it."""

    job: JobRecord
    entry: AgentEntry
    event: AgentEvent


@dataclass
class _Queued:
    pending: PendingJob
    queued_since: float  # when it last entered the queue
    wait: tuple[str | None, float | None]  # (reason, eta) as last stored
    first_eta: float | None = None  # the first ETA a placement gave it on this stay in the queue


class _Views:
    """The agents as a placement sees them, rebuilt only for an agent whose inventory or running job
    changed since the last placement: most of 500 agents are as they were."""

    def __init__(self) -> None:
        self._views: dict[str, tuple[AgentInventory, JobRecord | None, ReportedStep | None, AgentView]] = {}

    def of(
        self,
        entries: dict[str, AgentEntry],
        running: dict[str, list[JobRecord]],
        steps: ReportedSteps,
        top_priority: int,
    ) -> tuple[AgentView, ...]:
        views: dict[str, tuple[AgentInventory, JobRecord | None, ReportedStep | None, AgentView]] = {}
        for agent_id, entry in entries.items():
            occupying = _occupying(entry.inventory, running.get(agent_id, []))
            step = steps.shown(occupying, top_priority) if occupying is not None else None
            kept = self._views.get(agent_id)
            if kept is not None and kept[0] is entry.inventory and kept[1] is occupying and kept[2] is step:
                views[agent_id] = kept
            else:
                view = agent_view(entry.inventory, occupying, step)
                views[agent_id] = (entry.inventory, occupying, step, view)
        self._views = views
        return tuple(kept[3] for kept in views.values())


class _Records:
    """The running attempts' full records and the queue window's jobs (read without settings), each
    read once per attempt or stay in the queue: a round reads ids, not records. A running record's
    fields that change during the attempt are stale, except cancel_requested and preempt_requested;
    a queued one's do not change while queued (only this dispatcher queues a job again: `forget`)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._running: dict[tuple[str, int], JobRecord] = {}
        self._queued: dict[str, _Queued] = {}

    def running(self) -> list[JobRecord]:
        attempts = self.store.running_attempts()
        known = self._running
        missing = [a.job_id for a in attempts if (a.job_id, a.attempt) not in known]
        for job in self._read(missing, JobState.RUNNING):
            known[(job.id, job.attempts)] = job
        found = [(a, known[(a.job_id, a.attempt)]) for a in attempts if (a.job_id, a.attempt) in known]
        # Kept as updated: a record stays the same object while nothing of it changed (the views' cache).
        records = [
            replace(job, cancel_requested=a.cancel_requested, preempt_requested=a.preempt_requested)
            if (a.cancel_requested, a.preempt_requested) != (job.cancel_requested, job.preempt_requested)
            else job
            for a, job in found
        ]
        self._running = {(job.id, job.attempts): job for job in records}
        return records

    def add_running(self, jobs: Iterable[JobRecord]) -> None:
        """Attempts just started, as the store wrote them: the next round need not read them again."""
        self._running.update(((job.id, job.attempts), job) for job in jobs)

    def queue(self, limit: int) -> list[_Queued]:
        """The first `limit` queued jobs in queue order, as the policy sees them."""
        ids = self.store.queue_ids(limit)
        known = self._queued
        missing = [job_id for job_id in ids if job_id not in known]
        for job in self.store.queued_jobs(missing) if missing else ():
            known[job.job_id] = _queued(job)
        self._queued = {job_id: known[job_id] for job_id in ids if job_id in known}
        return list(self._queued.values())

    def forget(self, job_id: str) -> None:
        self._queued.pop(job_id, None)

    def _read(self, job_ids: list[str], state: JobState) -> list[JobRecord]:
        # A job may have moved on between the two reads: a later round reads it again.
        return [job for job in self.store.get_many(job_ids) if job.state is state] if job_ids else []


def _queued(job: QueuedJob) -> _Queued:
    pending = PendingJob(
        job.job_id,
        job.work,
        job.priority,
        job.owner,
        job.created_at,
        job.attempts,
        frozenset(job.avoid_agents),
        loras=job.loras,
        overrides=job.overrides,
    )
    return _Queued(pending, job.queued_since, (job.wait_reason, job.eta))


def _own_start(event: JobEvent, started: set[str]) -> bool:
    """Whether a state event is the start of an attempt this dispatcher made (not a cancel)."""
    return (
        event.job_id in started and event.data.get("state") == JobState.RUNNING and "agent_id" in event.data
    )


def _moved(stored: tuple[str | None, float | None], new: tuple[str | None, float | None], now: float) -> bool:
    """Whether a wait is worth writing again: another reason, or an ETA that moved enough."""
    (old_reason, old_eta), (reason, eta) = stored, new
    if old_reason != reason or (old_eta is None) != (eta is None):
        return True
    if old_eta is None or eta is None:
        return False
    return abs(eta - old_eta) >= max(ETA_SLACK_S, ETA_SLACK_SHARE * (eta - now))


def _progress(event: AgentEvent) -> JobProgress:
    return JobProgress(event.step, event.total, event.phase)


def _after_gpu(event: AgentEvent) -> bool:
    return event.kind is EventKind.OUTPUT or (event.kind is EventKind.PROGRESS and event.phase in AFTER_GPU)


def _holds(inventory: AgentInventory, job: JobRecord) -> bool:
    """Whether the agent holds this attempt: on its GPU, or finishing beside the next one."""
    attempt = (job.id, job.attempts)
    held = (
        (inventory.current_job, inventory.current_attempt),
        (inventory.previous_job, inventory.previous_attempt),
    )
    return attempt in held


def _holding(inventory: AgentInventory, job: JobRecord) -> AgentInventory:
    """The inventory once `job` is sent: the task it held, if any, becomes the previous one."""
    return replace(
        inventory,
        current_job=job.id,
        current_attempt=job.attempts,
        previous_job=inventory.current_job,
        previous_attempt=inventory.current_attempt,
        accepts_next=False,
    )


def _occupying(inventory: AgentInventory, jobs: list[JobRecord]) -> JobRecord | None:
    """The running job that keeps the agent busy: none when its only one has left the GPU."""
    if not jobs or (len(jobs) == 1 and inventory.accepts_next and _holds(inventory, jobs[0])):
        return None
    return max(jobs, key=lambda job: (job.started_at or 0.0, job.id))


def agent_view(
    inventory: AgentInventory, running: JobRecord | None, step: ReportedStep | None = None
) -> AgentView:
    """The agent as the policy sees it: running `running` (None: free for a job), which reported
    `step` (None: no denoising step yet)."""
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
        loras=frozenset(inventory.loras),
        # An agent that does not report its kernels is taken at what its architecture allows.
        attention_modes=frozenset(inventory.attention_modes) or None,
        # An agent that reports no plugins is taken to have WanFarm's own only.
        plugins=frozenset(inventory.plugins) or None,
        running_job=running.id if running else None,
        running_priority=running.priority if running else None,
        running_preemptions=running.preemptions if running else 0,
        running_step=step.step if step else 0,
        running_total=step.total if step else 0,
        running_since=running.started_at if running else None,
        running_submitted_at=running.created_at if running else None,
        running_step_at=step.at if step else None,
        preempting=running.preempt_requested if running else False,
    )


def _task(job: JobRecord) -> RenderTask:
    # The work as placed goes with the settings: the agent refuses settings that now resolve otherwise.
    return RenderTask(job.id, job.attempts, job.settings, job.work, job.running_profile(), job.plugins)
