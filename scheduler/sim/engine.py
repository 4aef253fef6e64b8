"""A discrete-event simulation that drives a policy's `place()` as the controller would.

Events are arrivals, attempt ends and downloads landing, on one heap. After a change the policy is
called at most once per `place_interval_s` of simulated time (changes in between are coalesced),
and only while some agent is idle. Decisions are applied as the dispatcher would: an assignment
only to an idle agent and a pending job, a prefetch only to an idle agent. Render times, memory
and loads come from scheduler.sim.truth, never from the policy's estimates.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from models.catalogue import get_model
from scheduler.feasibility import arch_problem
from scheduler.policy import Policy
from scheduler.preemption import PRIORITY_CLASS_WIDTH, priority_class, progress_moved
from scheduler.sim.cluster import Attempt, SimAgent, SimJob, SimNode, build_cluster
from scheduler.sim.formats import PoolSpec, TraceJob
from scheduler.sim.memory_truth import true_memory
from scheduler.sim.metrics import PolicyReport, SimResult, jain_index, median, percentile
from scheduler.sim.truth import TruthConfig, job_noise, render_phases
from scheduler.snapshot import (
    AgentView,
    Assignment,
    Decisions,
    Observation,
    PendingJob,
    Preemption,
    Prefetch,
    Snapshot,
)

MAX_ATTEMPTS = 4  # a job that fails this often is given up, as the controller would
HIGH_CLASS = 3  # priority class (scheduler.preemption) whose latency the report shows apart: 75-100
# With every agent busy a policy can only preempt: it is asked at most this often then (the farm's
# own bound on a wait worth a stop is a minute), or a saturated 2,000-GPU day costs a call a second.
PREEMPT_LOOK_S = 30.0
STALL_POLLS = 3  # calls to the policy once nothing else can happen, before leaving jobs unfinished
STALL_POLL_S = 60.0

# Event kinds; state changes at one instant are applied before the policy looks (PLACE last).
_ARRIVAL, _END, _DOWNLOAD, _PLACE = 0, 1, 2, 3


def simulate(
    pool: PoolSpec,
    trace: Iterable[TraceJob],
    policy: Policy,
    seed: int = 0,
    place_interval_s: float = 1.0,
    truth: TruthConfig | None = None,
) -> SimResult:
    """Run `trace` on `pool` under `policy`; the same seed gives the same result."""
    engine = _Engine(pool, policy, seed, place_interval_s, truth or TruthConfig())
    started = time.perf_counter()
    engine.run(iter(trace))
    wall = time.perf_counter() - started
    return SimResult(engine.report(), engine.now, wall, engine.policy_wall_s)


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    high_latencies: list[float] = field(default_factory=list)  # of jobs of HIGH_CLASS
    low_latencies: list[float] = field(default_factory=list)  # of jobs of class 0, the ones preempted most
    preemptions: int = 0
    checkpoint_seconds: float = 0.0  # written by preempted attempts and read back by resumed ones
    eta_errors: list[float] = field(default_factory=list)
    submit_eta_errors: list[float] = field(default_factory=list)  # of jobs whose model had finished before
    models_done: set[str] = field(default_factory=set)  # models with a finished job so far
    owner_seconds: dict[str, float] = field(default_factory=dict)
    busy_seconds: float = 0.0
    jobs: int = 0
    failed: int = 0
    cold_loads: int = 0
    downloads: int = 0
    bytes_downloaded: int = 0
    oom_failures: int = 0
    invalid: int = 0
    place_calls: int = 0
    first_submit: float | None = None
    last_done: float = 0.0


class _Engine:
    def __init__(
        self, pool: PoolSpec, policy: Policy, seed: int, place_interval_s: float, truth: TruthConfig
    ) -> None:
        self.policy = policy
        self.seed = seed
        self.interval = place_interval_s
        self.truth = truth
        self.nodes, self.agents = build_cluster(pool, truth, seed)
        self.by_id = {agent.agent_id: agent for agent in self.agents}
        self.views = [agent.view for agent in self.agents]
        self.idle = len(self.agents)
        self.pending: dict[str, SimJob] = {}
        self.events: list[tuple[float, int, int, object]] = []
        self.sequence = itertools.count()
        self.now = 0.0
        self.last_place = -float("inf")
        self.last_preempt_look = -float("inf")
        self.place_due = False
        self.tally = _Tally()
        self.policy_wall_s = 0.0
        self.unasked: dict[str, SimJob] = {}  # arrived since the policy was last called

    def run(self, arrivals: Iterator[TraceJob]) -> None:
        self._next_arrival(arrivals)
        stall_polls = STALL_POLLS
        while self.events:
            when, kind, _, payload = heapq.heappop(self.events)
            self.now = when
            if kind == _ARRIVAL:
                assert isinstance(payload, TraceJob)
                self._arrive(payload)
                self._next_arrival(arrivals)
            elif kind == _END:
                assert isinstance(payload, Attempt)
                self._end(payload, when)
            elif kind == _DOWNLOAD:
                assert isinstance(payload, tuple)
                self._landed(*payload)
            else:
                self.place_due = False
                if self._place():
                    stall_polls = STALL_POLLS
            if kind != _PLACE:
                self._changed()
            if not self.events and self.pending and self.idle and stall_polls:
                # Nothing more will happen by itself; give a policy that waits on the clock a look.
                stall_polls -= 1
                self._push(self.now + STALL_POLL_S, _PLACE, None)

    def report(self) -> PolicyReport:
        tally = self.tally
        latencies = sorted(tally.latencies)
        start = tally.first_submit or 0.0
        makespan = max(0.0, tally.last_done - start)
        owners = dict(sorted(tally.owner_seconds.items()))
        total = sum(owners.values())
        return PolicyReport(
            policy=self.policy.name,
            jobs=tally.jobs,
            completed=len(latencies),
            failed=tally.failed,
            unfinished=len(self.pending),
            mean_latency_s=sum(latencies) / len(latencies) if latencies else 0.0,
            p50_latency_s=percentile(latencies, 50),
            p95_latency_s=percentile(latencies, 95),
            p99_latency_s=percentile(latencies, 99),
            makespan_s=makespan,
            gpu_busy_share=tally.busy_seconds / (len(self.agents) * makespan) if makespan else 0.0,
            cold_loads=tally.cold_loads,
            downloads=tally.downloads,
            bytes_downloaded=tally.bytes_downloaded,
            oom_failures=tally.oom_failures,
            eta_error=median(tally.eta_errors),
            submit_eta_error=median(tally.submit_eta_errors),
            submit_eta_jobs=len(tally.submit_eta_errors),
            owner_gpu_seconds=owners,
            owner_share={owner: s / total for owner, s in owners.items()} if total else {},
            jain_fairness=jain_index(list(owners.values())),
            invalid_decisions=tally.invalid,
            place_calls=tally.place_calls,
            extra=self._priority_figures(),
        )

    def _priority_figures(self) -> dict[str, float]:
        # What preemption trades: the high class's latency against the rest's, and what it cost.
        tally = self.tally
        high = sorted(tally.high_latencies)
        return {
            "preemptions": float(tally.preemptions),
            "checkpoint_s": tally.checkpoint_seconds,
            "high_jobs": float(len(high)),
            "high_mean_latency_s": sum(high) / len(high) if high else 0.0,
            "high_p95_latency_s": percentile(high, 95),
            "low_mean_latency_s": sum(tally.low_latencies) / len(tally.low_latencies)
            if tally.low_latencies
            else 0.0,
        }

    # -- events ---------------------------------------------------------------------------------

    def _push(self, when: float, kind: int, payload: object) -> None:
        heapq.heappush(self.events, (when, kind, next(self.sequence), payload))

    def _next_arrival(self, arrivals: Iterator[TraceJob]) -> None:
        job = next(arrivals, None)
        if job is not None:
            self._push(job.t, _ARRIVAL, job)

    def _changed(self) -> None:
        # Coalesce: one policy call per interval however many events land in it.
        if not self.place_due:
            self.place_due = True
            self._push(max(self.now, self.last_place + self.interval), _PLACE, None)

    def _arrive(self, trace: TraceJob) -> None:
        tally = self.tally
        if tally.first_submit is None:
            tally.first_submit = trace.t
        job = SimJob(trace, tally.jobs, job_noise(self.truth, self.seed, tally.jobs, trace.work.model_id))
        tally.jobs += 1
        job.model_seen = trace.work.model_id in tally.models_done
        job.refresh_view()
        self.pending[trace.job_id] = job
        self.unasked[trace.job_id] = job

    def _landed(self, node: SimNode, model_id: str) -> None:
        del node.downloads[model_id]
        node.cached = node.cached | {model_id}
        self._refresh_node(node)

    def _end(self, attempt: Attempt, when: float) -> None:
        if when != attempt.end or attempt.agent.attempt is not attempt:
            return  # the end it had before a preemption moved it
        agent, job, tally = attempt.agent, attempt.job, self.tally
        agent.attempt = None
        self.idle += 1
        spent = attempt.end - attempt.start
        tally.busy_seconds += spent
        owner = job.trace.owner
        tally.owner_seconds[owner] = tally.owner_seconds.get(owner, 0.0) + spent
        rendered = spent - attempt.load_s
        if attempt.first_step and attempt.stopped_at is None:
            # A resumed attempt rendered part of the steps: learnt as the whole job, at its pace.
            rendered += attempt.first_step * attempt.phases.step_s
        if attempt.stopped_at is not None:
            # Preempted: back to the queue with its steps, not charged, nothing learnt.
            tally.preemptions += 1
            job.kept_steps = attempt.stopped_at
            job.preemptions += 1
            job.refresh_view()
            self.pending[job.trace.job_id] = job
            self._refresh_node(agent.node)
            return
        if attempt.out_of_memory:
            agent.hot_model = None  # the worker process is restarted after an OOM
            tally.oom_failures += 1
            job.attempts += 1
            job.avoid = job.avoid | {agent.agent_id}
            if job.attempts >= MAX_ATTEMPTS:
                tally.failed += 1
            else:
                job.refresh_view()
                self.pending[job.trace.job_id] = job
        else:
            tally.latencies.append(attempt.end - job.trace.t)
            if priority_class(job.trace.priority) >= HIGH_CLASS:
                tally.high_latencies.append(attempt.end - job.trace.t)
            elif priority_class(job.trace.priority) == 0:
                tally.low_latencies.append(attempt.end - job.trace.t)
            tally.last_done = attempt.end
            tally.models_done.add(job.trace.work.model_id)
            latency = attempt.end - job.trace.t
            if job.model_seen and job.submit_eta is not None and latency > 0:
                tally.submit_eta_errors.append(abs(job.submit_eta - attempt.end) / latency)
            estimated = attempt.assignment.est_finish - attempt.start
            if spent > 0:  # an instant attempt has no relative error to measure
                tally.eta_errors.append(abs(estimated - spent) / spent)
        self._refresh_node(agent.node)
        self.policy.observe(_observation(attempt, rendered))

    # -- the policy -----------------------------------------------------------------------------

    def _place(self) -> bool:
        """Call the policy if it can do anything; True when it assigned a job."""
        self.last_place = self.now
        if not self.idle:
            if self.now - self.last_preempt_look < PREEMPT_LOOK_S or not self._could_preempt():
                return False
            self.last_preempt_look = self.now
        pending = tuple(job.view for job in self.pending.values())
        snapshot = Snapshot(self.now, self._views_with_progress(pending), pending)
        started = time.perf_counter()
        decisions = self.policy.place(snapshot)
        self.policy_wall_s += time.perf_counter() - started
        self.tally.place_calls += 1
        if self.unasked:
            self._note_submit_etas(decisions)
        return self._apply(decisions)

    def _note_submit_etas(self, decisions: Decisions) -> None:
        # The first ETA the policy gives a job, in the first call after its arrival (an assignment's
        # estimated finish, or its wait's ETA; None when it gave none).
        unasked = self.unasked
        for assignment in decisions.assignments:
            job = unasked.pop(assignment.job_id, None)
            if job is not None:
                job.submit_eta = assignment.est_finish
        for wait in decisions.waiting:
            if not unasked:
                break
            job = unasked.pop(wait.job_id, None)
            if job is not None:
                job.submit_eta = wait.eta
        unasked.clear()

    def _apply(self, decisions: Decisions) -> bool:
        assigned = False
        for assignment in decisions.assignments:
            job = self.pending.get(assignment.job_id)
            agent = self.by_id.get(assignment.agent_id)
            if job is None or agent is None or agent.attempt is not None:
                self.tally.invalid += 1
                continue
            if arch_problem(get_model(job.trace.work.model_id), agent.view) is not None:
                self.tally.invalid += 1
                continue
            del self.pending[assignment.job_id]
            self._start(job, agent, assignment)
            assigned = True
        for prefetch in decisions.prefetches:
            self._prefetch(prefetch)
        for preemption in decisions.preemptions:
            self._preempt(preemption)
        return assigned

    def _could_preempt(self) -> bool:
        # Whether a queued job outranks a running one by class.
        # priority_class never decreases with the priority: the extremes' classes decide.
        running = [agent.attempt.job.trace.priority for agent in self.agents if agent.attempt is not None]
        if not running or not self.pending:
            return False
        highest = max(job.trace.priority for job in self.pending.values())
        return priority_class(highest) > priority_class(min(running))

    def _views_with_progress(self, pending: tuple[PendingJob, ...]) -> tuple[AgentView, ...]:
        """The agents' views, with the progress their running jobs reported by now where a queued job
        outranks them (only then does a policy weigh it; the views stay cached otherwise)."""
        top = priority_class(max(job.priority for job in pending)) if pending else -1
        if top <= 0:
            return tuple(self.views)  # no running job is of a lower class than a queued one
        # priority_class(p) < top, as one comparison (classes never decrease with the priority).
        least = top * PRIORITY_CLASS_WIDTH
        now = self.now
        for agent in self.agents:
            attempt = agent.attempt
            if attempt is None or attempt.job.trace.priority >= least:
                continue
            view = agent.view
            if view is agent.progress_view and now < agent.progress_due:
                continue  # nothing it shows can have moved yet
            step, at = attempt.step_at(now)
            preempting = attempt.stopped_at is not None
            if preempting != view.preempting or progress_moved(view.running_step, step, view.running_total):
                # Kept as the agent's view until it changes again, so unchanged agents stay the same object.
                view = agent.view = _with_progress(view, step, at, preempting)
                self.views[agent.index] = view
            agent.progress_view = view
            agent.progress_due = attempt.progress_due(view.running_step)
        return tuple(self.views)

    def _preempt(self, preemption: Preemption) -> None:
        """Stop the attempt at its next step boundary, plus the checkpoint's write."""
        agent = self.by_id.get(preemption.agent_id)
        attempt = agent.attempt if agent is not None else None
        if attempt is None or attempt.job.trace.job_id != preemption.job_id or attempt.stopped_at is not None:
            self.tally.invalid += 1
            return
        total = attempt.job.trace.work.steps
        # While it loads or sets up: "step" first_step, reached when the set-up ends. Past its last
        # step it is decoding, and an agent lets that finish.
        step, at = attempt.step_at(self.now)
        next_step = step + 1
        end = at + attempt.phases.step_s + self.truth.checkpoint_write_s
        if next_step >= total or end >= attempt.end:
            return  # it ends before it could stop: as the agent, it finishes
        if attempt.out_of_memory:
            return  # it is past its memory, so no step of it is worth a checkpoint: it dies as it would
        attempt.stopped_at = next_step
        attempt.agent.progress_due = -math.inf  # its view is to say so
        attempt.end = end
        self.tally.checkpoint_seconds += self.truth.checkpoint_write_s
        self._push(end, _END, attempt)

    def _start(self, job: SimJob, agent: SimAgent, assignment: Assignment) -> None:
        work, truth = job.trace.work, self.truth
        load = self._load_seconds(agent, work.model_id)
        if agent.hot_model != work.model_id:
            self.tally.cold_loads += 1
        phases = render_phases(work, assignment.profile, agent.flops_per_s).scaled(job.noise.render)
        # A resumed job renders only the steps left, after reading its checkpoint; the set-up (text
        # encoding) and the decoding it pays again.
        render = phases.seconds(work.steps - job.kept_steps)
        if job.kept_steps:
            load += truth.checkpoint_read_s
            self.tally.checkpoint_seconds += truth.checkpoint_read_s
        vram, ram = true_memory(work.model_id, assignment.profile, work.size, job.noise)
        oom = vram > agent.vram_bytes or ram > agent.node.ram_bytes
        spent = load + (render * truth.oom_render_share if oom else render)
        attempt = Attempt(
            job,
            agent,
            assignment,
            self.now,
            load,
            render,
            self.now + spent,
            vram,
            ram,
            oom,
            phases,
            job.kept_steps,
        )
        agent.attempt = attempt
        agent.hot_model = work.model_id
        self.idle -= 1
        self._refresh_node(agent.node)
        self._push(attempt.end, _END, attempt)

    def _load_seconds(self, agent: SimAgent, model_id: str) -> float:
        if agent.hot_model == model_id:
            return 0.0
        node = agent.node
        weight = get_model(model_id).weight_bytes
        if model_id in node.cached:
            return weight / node.disk_bytes_per_s
        # Weights arrive over the network and are read as they land (no second disk pass).
        return self._download(node, model_id, weight) - self.now

    def _download(self, node: SimNode, model_id: str, weight: int) -> float:
        """When the model's weights will be on the node: joins a download under way."""
        landing = node.downloads.get(model_id)
        if landing is not None:
            return landing
        landing = max(self.now, node.net_free_at) + weight / node.net_bytes_per_s
        node.net_free_at = landing
        node.downloads[model_id] = landing
        self.tally.downloads += 1
        self.tally.bytes_downloaded += weight
        self._push(landing, _DOWNLOAD, (node, model_id))
        return landing

    def _prefetch(self, prefetch: Prefetch) -> None:
        agent = self.by_id.get(prefetch.agent_id)
        try:
            preset = get_model(prefetch.model_id)
        except LookupError:
            preset = None
        if agent is None or preset is None or agent.attempt is not None:
            self.tally.invalid += 1
            return
        node = agent.node
        if preset.id in node.cached or preset.id in node.downloads:
            return
        self._download(node, preset.id, preset.weight_bytes)

    def _refresh_node(self, node: SimNode) -> None:
        # RAM in use is the node's, so every agent of the node gets a new view.
        in_use = node.ram_in_use()
        for agent in node.agents:
            agent.refresh_view(in_use)
            self.views[agent.index] = agent.view


def _with_progress(view: AgentView, step: int, at: float, preempting: bool) -> AgentView:
    """`replace(view, running_step=step, running_step_at=at, preempting=preempting)`, by copying the
    fields: a 2,000-GPU day makes half a million of these, and `replace` re-runs __init__ on 30 fields."""
    new = object.__new__(AgentView)
    fields = new.__dict__
    fields.update(view.__dict__)
    fields["running_step"] = step
    fields["running_step_at"] = at
    fields["preempting"] = preempting
    return new


def _observation(attempt: Attempt, rendered: float) -> Observation:
    trace = attempt.job.trace
    return Observation(
        job_id=trace.job_id,
        work=trace.work,
        gpu_name=attempt.agent.spec.name,
        profile=attempt.assignment.profile,
        render_seconds=rendered,
        load_seconds=attempt.load_s,
        peak_vram_bytes=attempt.vram_bytes,
        out_of_memory=attempt.out_of_memory,
        owner=trace.owner,
        finished_at=attempt.end,
    )
