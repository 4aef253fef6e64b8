"""One placement round of the wanfarm policy, on a working copy of the pool.

Each job of the queue's head takes the agent where it would finish earliest: max(now, agent free at)
+ load + render. An idle agent starts it; a busy one (or one given a job earlier this round) is
reserved until then and the job waits for it, so the jobs behind see it taken. The tail of the queue
gets its ETA from a virtual schedule on the pool the head leaves (queue_eta). An agent counts as
caching a model another agent of its node runs or ran last (the disk is shared). Why waiting is
limited, and the figures behind the constants: docs/scheduler.md, "The round".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from scheduler.cost import lora_seconds
from scheduler.feasibility import unknown_model
from scheduler.snapshot import Assignment, Decisions, PendingJob, Prefetch, Waiting
from scheduler.wanfarm.fair_share import QueueOrder
from scheduler.wanfarm.job_shapes import JobShape, RoundShapes, shape_key
from scheduler.wanfarm.pool_index import PoolIndex
from scheduler.wanfarm.queue_eta import QueueEta

# Earliest finish alone would undo fair share: an owner far behind would wait for the busy cards
# that suit it best while owners ahead take every idle one.
FAIR_SLOWDOWN = 3.0  # how much later an owner behind its share may finish on an idle card than wait
# Waiting for one of n fast cards pays until about n x (slow / fast - 1) jobs queue for the class:
# with many, every job waits while the slower cards idle.
BIG_CLASS = 8  # agents of one class (card and node memory) from which speed alone is no reason to wait
# Jobs place themselves on a cold agent whenever the copy pays for them: an early copy mostly costs bytes.
PREFETCH_MARGIN = 32.0  # a model's backlog per holder must exceed this many downloads to copy it


@dataclass(frozen=True)
class DownloadCost:
    """How a round weighs downloading weights against waiting for an agent that holds them.

    `charge`: a cold candidate competes as if it finished this many download-times later than it
    would (0: on its finish alone). With a charge, an owner behind its share is not given a cold
    agent either, and `prefetch` says whether idle agents copy models ahead of the jobs.
    """

    charge: float = 0.0
    prefetch: bool = True


@dataclass(frozen=True)
class _Choice:
    index: int  # agent
    finish: float
    warmth: str  # "hot", "cached" or "cold"
    option_at: int  # position in the shape's options
    score: float  # finish, plus the charge for downloading the weights when cold


@dataclass
class _Demand:
    waiting: int
    shape: JobShape


class PlacementRound:
    """Places the jobs of one snapshot; `run()` once."""

    def __init__(
        self,
        pool: PoolIndex,
        shapes: RoundShapes,
        behind: frozenset[str] = frozenset(),
        downloads: DownloadCost = DownloadCost(),
    ) -> None:
        self.pool = pool
        self.shapes = shapes
        self.behind = behind  # owners well behind their fair share: their jobs do not wait
        self.downloads = downloads
        self.now = pool.now
        self.assignments: list[Assignment] = []
        self.waiting: list[Waiting] = []
        self.demand: dict[str, _Demand] = {}

    def run(self, order: QueueOrder) -> Decisions:
        for job in order.head:
            self._place(job)
        self._queue_tail(order.tail, ahead=len(order.head))
        prefetches = self._prefetches() if self.downloads.prefetch else []
        return Decisions(tuple(self.assignments), tuple(prefetches), tuple(self.waiting))

    def _place(self, job: PendingJob) -> None:
        shape = self.shapes.shape(job)
        model_id = job.work.model_id
        if shape is None:
            self.waiting.append(Waiting(job.job_id, unknown_model(model_id)))
            return
        if shape.refusal is not None:
            self.waiting.append(Waiting(job.job_id, shape.refusal))
            return
        fair = False
        if job.avoid_agents or job.loras:
            choice = self._scan(job, shape)
            if choice is None and job.avoid_agents:
                # Every agent able to run it lost it once (a killed worker, a restarted node): avoiding
                # is a preference, else it would wait forever; max_attempts bounds the retries.
                choice = self._scan(replace(job, avoid_agents=frozenset()), shape)
        else:
            choice = self._best(model_id, shape)
            if choice is not None and not self.pool.startable[choice.index] and self.pool.idle_left:
                choice, fair = self._instead_of_waiting(job, shape, choice)
        if choice is None:
            avoided = ", ".join(sorted(job.avoid_agents))
            reason = f"no agent left to try: every agent that can run it failed it before ({avoided})"
            self.waiting.append(Waiting(job.job_id, reason))
            return
        pool = self.pool
        agent = pool.agents[choice.index]
        if pool.startable[choice.index]:
            option = shape.options[choice.option_at]
            reason = {"hot": "hot", "cached": "cached"}.get(choice.warmth, "earliest finish")
            if fair:
                reason = f"fair share: {job.owner} is behind ({choice.warmth})"
            self.assignments.append(
                Assignment(job.job_id, agent.agent_id, option.profile, self.now, choice.finish, reason)
            )
        else:
            self.waiting.append(Waiting(job.job_id, self._wait_reason(job, shape, choice), choice.finish))
            self._count_demand(model_id, shape)
        pool.reserve(choice.index, choice.finish, model_id)

    def _instead_of_waiting(self, job: PendingJob, shape: JobShape, choice: _Choice) -> tuple[_Choice, bool]:
        # The job would wait for a busy agent: an idle one instead when its owner is behind, or when
        # the awaited class is big and the wait is longer than the load it saves. True: fair share.
        pool = self.pool
        behind = job.owner in self.behind
        if not behind and pool.class_size[pool.class_of[choice.index]] < BIG_CLASS:
            return choice, False
        idle = self._best(job.work.model_id, shape, idle_only=True)
        if idle is None:
            return choice, False
        if behind:
            # Not at any price: a 14B video on a 3060 can take hours where the awaited card takes one.
            if idle.warmth == "cold" and self.downloads.charge:
                return choice, False
            if idle.score - self.now <= FAIR_SLOWDOWN * (choice.score - self.now):
                return idle, True
            return choice, False
        options = shape.options
        faster_by = options[idle.option_at].render_s - options[choice.option_at].render_s
        return (idle if idle.score <= choice.score + max(0.0, faster_by) else choice), False

    def _best(self, model_id: str, shape: JobShape, idle_only: bool = False) -> _Choice | None:
        # Options come fastest first. Nothing can finish before (earliest free agent anywhere +
        # render), so once that passes the best finish so far the slower classes are not looked at;
        # a class whose own earliest agent cannot beat it even with the model hot is skipped.
        # `idle_only`: startable agents only. Idle agents top every heap (their key is -inf), so a
        # heap whose top is busy has none.
        pool = self.pool
        free_at, hot, cached, startable, top = pool.free_at, pool.hot, pool.cached, pool.startable, pool.top
        weight = shape.weight_bytes
        charged_bytes = weight * self.downloads.charge
        hot_heaps = pool.hot_heaps.get(model_id, {})
        cached_heaps = pool.cached_heaps.get(model_id, {})
        class_first = pool.class_first
        soonest = free_at[top(pool.everyone)] if pool.agents else math.inf
        best_finish, best_index, best_warmth, best_at, best_score = math.inf, -1, "", -1, math.inf
        for at, option in enumerate(shape.options):
            render = option.render_s
            if soonest + render > best_score:
                break
            number = option.class_index
            first = class_first[number]
            if first == -2:
                first = pool.first_in_class(number)
            if first < 0:
                continue
            # No agent of the class loads faster than hot if the model is hot in it, else than a
            # disk read if cached in it, else than the fastest download of the pool.
            if number in hot_heaps:
                least_load = 0.0
            elif number in cached_heaps:
                least_load = weight * pool.fastest_read_s_per_byte
            else:
                least_load = weight * pool.fastest_cold_s_per_byte
            if free_at[first] + least_load + render > best_score:
                continue
            # The class's earliest agent, and unless it already holds the model the earliest that
            # holds it hot, or cached.
            candidates = [first]
            if hot[first] != model_id:
                if number in hot_heaps:
                    candidates.append(pool.top(hot_heaps[number], model_id, True))
                if model_id not in cached[first] and number in cached_heaps:
                    candidates.append(pool.top(cached_heaps[number], model_id, False))
            for index in candidates:
                if index < 0 or (idle_only and not startable[index]):
                    continue
                charge = 0.0
                if hot[index] == model_id:
                    load, warmth = 0.0, "hot"
                elif model_id in cached[index]:
                    load, warmth = weight * pool.read_s_per_byte[index], "cached"
                else:
                    load, warmth = weight * pool.cold_s_per_byte[index], "cold"
                    charge = charged_bytes * pool.net_s_per_byte[index]
                finish = free_at[index] + load + render
                score = finish + charge
                if score < best_score or (
                    score == best_score
                    and (not startable[index], index) < (not startable[best_index], best_index)
                ):
                    best_finish, best_index, best_warmth, best_at = finish, index, warmth, at
                    best_score = score
        if best_index < 0:
            return None
        return _Choice(best_index, best_finish, best_warmth, best_at, best_score)

    def _scan(self, job: PendingJob, shape: JobShape) -> _Choice | None:
        # Jobs that avoid some agents (retries) are rare, and the pool does not index which agents
        # hold a LoRA: look at every agent, an agent's fetch of the LoRAs it lacks in its finish.
        pool = self.pool
        option_of = {option.class_index: at for at, option in enumerate(shape.options)}
        model_id = job.work.model_id
        best: _Choice | None = None
        for index, agent in enumerate(pool.agents):
            at = option_of.get(pool.class_of[index])
            if at is None or agent.agent_id in job.avoid_agents:
                continue
            charge = 0.0
            if pool.hot[index] == model_id:
                load, warmth = 0.0, "hot"
            elif model_id in pool.cached[index]:
                load, warmth = shape.weight_bytes * pool.read_s_per_byte[index], "cached"
            else:
                load, warmth = shape.weight_bytes * pool.cold_s_per_byte[index], "cold"
                charge = shape.weight_bytes * pool.net_s_per_byte[index] * self.downloads.charge
            if job.loras:
                load += lora_seconds(job.loras, agent)
            finish = pool.free_at[index] + load + shape.options[at].render_s
            if best is None or (finish + charge, not pool.startable[index]) < (
                best.score,
                not pool.startable[best.index],
            ):
                best = _Choice(index, finish, warmth, at, finish + charge)
        return best

    def _wait_reason(self, job: PendingJob, shape: JobShape, choice: _Choice) -> str:
        pool = self.pool
        agent = pool.agents[choice.index]
        frees_in = max(0.0, pool.free_at[choice.index] - self.now)
        idle = self._best_idle(shape)
        if idle is None:
            why = "every agent that can run it is busy"
        elif (
            choice.warmth in ("hot", "cached")
            and self.downloads.charge
            and not pool.holds(idle, job.work.model_id)
        ):
            free, charge = pool.agents[idle].gpu_name, self.downloads.charge
            why = f"model {choice.warmth} there; a download to the free {free} counts {charge:g}x its time"
        elif choice.warmth in ("hot", "cached"):
            why = f"model {choice.warmth} there; sooner than on the free {pool.agents[idle].gpu_name}"
        else:
            why = f"faster: finishes sooner than on the free {pool.agents[idle].gpu_name}"
        when = f"frees in {frees_in:.0f} s"
        if frees_in == 0.0 and agent.busy_until is not None and agent.busy_until < self.now:
            # Its job runs past the estimate: it frees any moment, by how much is unknown.
            when = f"its job is {self.now - agent.busy_until:.0f} s past its estimate"
        return f"waiting for {agent.gpu_name} {agent.agent_id} ({why}), {when}"

    def _best_idle(self, shape: JobShape) -> int | None:
        # The fastest class with an agent still startable now, for the waiting reason.
        pool = self.pool
        if pool.idle_left == 0:
            return None
        for option in shape.options:
            index = pool.first_in_class(option.class_index)
            if index >= 0 and pool.startable[index]:
                return index
        return None

    def _queue_tail(self, tail: tuple[PendingJob, ...], ahead: int) -> None:
        # ETAs from a virtual schedule of the tail on the pool the head leaves (queue_eta). The loop
        # is lean on purpose: it runs for most of a 100,000-job queue every round.
        if not tail:
            return
        finish = QueueEta(self.pool).finish
        append = self.waiting.append
        shape_of, known = self.shapes.shape, self.shapes.known
        counts: dict[str, int] = {}
        first_shape: dict[str, JobShape] = {}
        for position, job in enumerate(tail, start=ahead):
            work = job.work
            try:
                shape = known[work.key if job.overrides is None else shape_key(job)]
            except KeyError:
                shape = shape_of(job)
            if shape is None:
                append(Waiting(job.job_id, unknown_model(work.model_id)))
            elif shape.refusal is not None:
                append(Waiting(job.job_id, shape.refusal))
            else:
                append(Waiting(job.job_id, f"queued behind {position} jobs", finish(shape)))
                model_id = work.model_id
                count = counts.get(model_id, 0)
                if not count:
                    first_shape[model_id] = shape
                counts[model_id] = count + 1
        for model_id, count in counts.items():
            self._count_demand(model_id, first_shape[model_id], count)

    def _count_demand(self, model_id: str, shape: JobShape, count: int = 1) -> None:
        demand = self.demand.get(model_id)
        if demand is None:
            self.demand[model_id] = _Demand(count, shape)
        else:
            demand.waiting += count

    def _prefetches(self) -> list[Prefetch]:
        # Replicate a model onto an idle agent only when its backlog is more than the agents holding
        # it can clear within PREFETCH_MARGIN downloads' time: a copy made sooner mostly costs bytes.
        # One prefetch per agent and per node and model.
        pool = self.pool
        if pool.idle_left == 0 or not self.demand:
            return []
        startable = pool.startable
        fastest = [index for index in pool.fastest_first if startable[index]]
        if not fastest:
            return []
        prefetches: list[Prefetch] = []
        busy: set[int] = set()
        for model_id, demand in sorted(self.demand.items(), key=lambda item: (-item[1].waiting, item[0])):
            backlog_s = demand.waiting * demand.shape.mean_render_s
            if backlog_s <= demand.shape.weight_bytes * pool.fastest_net_s_per_byte * PREFETCH_MARGIN:
                continue  # not even worth a first copy on the fastest link
            holders = pool.holders(model_id)
            capable = {option.class_index for option in demand.shape.options}
            nodes: set[str] = set()
            for index in fastest:
                agent = pool.agents[index]
                download_s = demand.shape.weight_bytes * pool.net_s_per_byte[index]
                if backlog_s <= (holders + 1) * download_s * PREFETCH_MARGIN:
                    break
                if (
                    index in busy
                    or pool.class_of[index] not in capable
                    or pool.holds(index, model_id)
                    or agent.node_id in nodes
                    or agent.disk_free < demand.shape.weight_bytes
                ):
                    continue
                prefetches.append(Prefetch(agent.agent_id, model_id))
                busy.add(index)
                nodes.add(agent.node_id)
                holders += 1
        return prefetches
