"""The dispatch loop's decisions over a real store and the fake wrapper (no Ray), in milliseconds:
a lost agent, a refusal, a cancel, the order of writing and telling, and depth-one pipelining."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.dispatcher import BUSY_PLACEMENT_EVERY_S, Dispatcher
from controller.jobs import JobRecord, JobState
from controller.registry import INVENTORY_SLICE
from controller.store import JobStore
from gpu_agent.messages import AgentInventory, EventKind, RenderTask
from models.progress import Phase
from scheduler.snapshot import Decisions, Observation, Snapshot, Waiting
from tests.job_records import new_job
from tests.unit.fake_cluster import FakeAgent, FakeCluster, FirstFree, fake_dispatcher

T0 = 1_700_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    with JobStore(tmp_path / "jobs.db") as opened:
        yield opened


def _submit(store: JobStore, count: int = 1, max_attempts: int = 3) -> list[str]:
    jobs = [new_job("ana", 0, {"prompt": f"fox {i}"}, max_attempts=max_attempts) for i in range(count)]
    return [job.id for job in store.add_jobs(jobs, T0)]


def _get(store: JobStore, job_id: str) -> JobRecord:
    job = store.get(job_id)
    assert job is not None
    return job


def _agent_of(store: JobStore, cluster: FakeCluster, job_id: str) -> FakeAgent:
    agent_id = _get(store, job_id).agent_id
    assert agent_id is not None
    return cluster.agents[agent_id]


def _dispatcher(
    store: JobStore, cluster: FakeCluster, tmp_path: Path, policy: object | None = None
) -> Dispatcher:
    return fake_dispatcher(store, cluster, tmp_path, policy=policy, clock=lambda: T0)  # type: ignore[arg-type]


def test_a_lost_agent_requeues_its_job_and_the_other_agents_news_still_lands(
    store: JobStore, tmp_path: Path
) -> None:
    doomed, fine = _submit(store, 2)
    cluster = FakeCluster(gpus=2)
    dispatcher = _dispatcher(store, cluster, tmp_path)
    dispatcher.tick()
    _agent_of(store, cluster, fine).succeed()
    lost = _agent_of(store, cluster, doomed)
    lost.kill()

    dispatcher.tick()

    assert _get(store, fine).state is JobState.SUCCEEDED
    requeued = _get(store, doomed)
    assert requeued.avoid_agents == (lost.agent_id,)
    assert f"attempt 1 on {lost.agent_id}: agent lost" in requeued.attempt_errors[0]


def test_an_agent_that_refuses_a_task_sends_the_job_to_another_agent(store: JobStore, tmp_path: Path) -> None:
    [job_id] = _submit(store)
    cluster = FakeCluster(gpus=2)
    dispatcher = _dispatcher(store, cluster, tmp_path)
    busy = cluster.agents["node0001-gpu0"]
    busy.refuse = True

    dispatcher.tick()  # offered to the first free agent, which says it is busy
    dispatcher.tick()

    job = _get(store, job_id)
    assert (job.state, job.attempts, job.agent_id) == (JobState.RUNNING, 2, "node0001-gpu1")
    assert job.attempt_errors == ("attempt 1 on node0001-gpu0: agent was busy; not charged",)
    assert job.charged_attempts == 1  # the refused attempt never ran: only the running one counts
    assert busy.started == []


def test_the_assignment_is_stored_before_the_agent_hears_of_it(store: JobStore, tmp_path: Path) -> None:
    [job_id] = _submit(store)
    cluster = FakeCluster()
    dispatcher = _dispatcher(store, cluster, tmp_path)
    seen: list[tuple[str, JobState, int, str | None]] = []

    def look(task: RenderTask) -> None:
        job = _get(store, task.job_id)
        seen.append((job.id, job.state, job.attempts, job.agent_id))

    cluster.agents["node0001-gpu0"].on_start = look
    dispatcher.tick()

    assert seen == [(job_id, JobState.RUNNING, 1, "node0001-gpu0")]


def test_a_cancel_reaches_the_agent_and_the_job_ends_canceled(store: JobStore, tmp_path: Path) -> None:
    [job_id] = _submit(store)
    cluster = FakeCluster()
    dispatcher = _dispatcher(store, cluster, tmp_path)
    dispatcher.tick()
    store.request_cancel(job_id, T0 + 1)

    dispatcher.tick()
    agent = cluster.agents["node0001-gpu0"]
    assert agent.cancels == [(job_id, 1)]
    assert _get(store, job_id).state is JobState.RUNNING  # until the agent stops between steps
    agent.end(EventKind.CANCELED)
    dispatcher.tick()

    assert _get(store, job_id).state is JobState.CANCELED


def test_an_agent_whose_job_left_the_gpu_takes_the_next_one_and_both_finish(
    store: JobStore, tmp_path: Path
) -> None:
    first, second, third = _submit(store, 3)
    cluster = FakeCluster()
    dispatcher = _dispatcher(store, cluster, tmp_path)
    dispatcher.tick()
    agent = cluster.agents["node0001-gpu0"]
    agent.progress(2, 4)
    dispatcher.tick()
    assert _get(store, second).state is JobState.QUEUED  # still denoising: no room

    agent.leave_gpu()  # the first job encodes and uploads
    dispatcher.tick()  # reads "encoding" and the agent's room for one more
    dispatcher.tick()
    assert [_get(store, j).state for j in (first, second, third)] == [
        JobState.RUNNING,
        JobState.RUNNING,
        JobState.QUEUED,
    ]
    assert [task.job_id for task in agent.started] == [first, second]
    assert _get(store, first).progress.phase == Phase.ENCODING.value

    agent.succeed(first)
    dispatcher.tick()
    agent.succeed(second)
    dispatcher.tick()
    assert [_get(store, j).state for j in (first, second)] == [JobState.SUCCEEDED, JobState.SUCCEEDED]
    assert _get(store, third).state is JobState.RUNNING


def _two_jobs_one_agent(store: JobStore, tmp_path: Path) -> tuple[str, str, FakeCluster, Dispatcher]:
    first, second = _submit(store, 2)
    cluster = FakeCluster()
    return first, second, cluster, _dispatcher(store, cluster, tmp_path)


def test_the_next_job_starts_as_soon_as_the_last_one_left_the_gpu_not_at_the_next_refresh(
    store: JobStore, tmp_path: Path
) -> None:
    first, second, cluster, dispatcher = _two_jobs_one_agent(store, tmp_path)
    dispatcher.refresh_every_s = 3600.0
    dispatcher.tick()
    dispatcher.tick()
    cluster.agents["node0001-gpu0"].leave_gpu()

    dispatcher.tick()  # reads "encoding", the agent's room for one more, and fills it

    assert [_get(store, j).state for j in (first, second)] == [JobState.RUNNING, JobState.RUNNING]


def test_a_job_that_ends_just_before_the_next_one_reaches_its_agent_still_succeeds(
    store: JobStore, tmp_path: Path
) -> None:
    first, second, cluster, dispatcher = _two_jobs_one_agent(store, tmp_path)
    dispatcher.tick()
    agent = cluster.agents["node0001-gpu0"]
    agent.leave_gpu()
    agent.on_start = lambda task: agent.succeed(first)  # its upload ends as the next task arrives

    dispatcher.tick()
    dispatcher.tick()

    assert [_get(store, j).state for j in (first, second)] == [JobState.SUCCEEDED, JobState.RUNNING]


def test_a_restarted_controller_finds_both_jobs_of_a_pipelined_agent(store: JobStore, tmp_path: Path) -> None:
    first, second = _submit(store, 2)
    cluster = FakeCluster()  # a Ray cluster of its own: it outlives the controller
    dispatcher = _dispatcher(store, cluster, tmp_path)
    dispatcher.tick()
    agent = cluster.agents["node0001-gpu0"]
    agent.leave_gpu()
    dispatcher.tick()
    dispatcher.tick()
    assert _get(store, second).state is JobState.RUNNING

    restarted = _dispatcher(store, cluster, tmp_path)
    restarted.tick()
    restarted.tick()
    assert [(_get(store, j).state, _get(store, j).attempts) for j in (first, second)] == [
        (JobState.RUNNING, 1),
        (JobState.RUNNING, 1),
    ]
    store.request_cancel(first, T0 + 1)
    store.request_cancel(second, T0 + 1)
    restarted.tick()
    assert sorted(agent.cancels) == sorted([(first, 1), (second, 1)])
    agent.end(EventKind.CANCELED, first)
    agent.end(EventKind.CANCELED, second)
    restarted.tick()
    assert [_get(store, j).state for j in (first, second)] == [JobState.CANCELED, JobState.CANCELED]


def test_a_round_asks_all_agents_in_one_wait_however_many_there_are(store: JobStore, tmp_path: Path) -> None:
    _submit(store, 40)
    cluster = FakeCluster(gpus=8, nodes_count=5)
    dispatcher = _dispatcher(store, cluster, tmp_path)
    dispatcher.tick()
    assert len(store.running()) == 40
    for agent in cluster.agents.values():
        agent.progress(1, 4)

    before = cluster.batches
    dispatcher.tick()  # refreshes every agent's inventory, then reads every agent's events

    assert cluster.batches - before == 2
    assert {_get(store, job.id).progress.step for job in store.running()} == {1}


class Counting:
    """FirstFree that counts its rounds and says why every job it leaves waits."""

    name = "counting"

    def __init__(self) -> None:
        self.rounds = 0
        self.inner = FirstFree()

    def place(self, snapshot: Snapshot) -> Decisions:
        self.rounds += 1
        placed = self.inner.place(snapshot)
        taken = {a.job_id for a in placed.assignments}
        waiting = tuple(
            Waiting(j.job_id, "no free GPU", snapshot.now + 60)
            for j in snapshot.pending
            if j.job_id not in taken
        )
        return Decisions(assignments=placed.assignments, waiting=waiting)

    def observe(self, observation: Observation) -> None:
        pass


def test_progress_alone_does_not_run_placement_but_a_submission_does(store: JobStore, tmp_path: Path) -> None:
    first, waiting = _submit(store, 2)
    cluster = FakeCluster()
    policy = Counting()
    dispatcher = _dispatcher(store, cluster, tmp_path, policy)
    dispatcher.refresh_every_s = 3600.0  # no periodic refresh in this test
    dispatcher.tick()  # places the first job, and says why the second waits
    dispatcher.tick()  # writes the wait; its own start was no reason to place again
    rounds = policy.rounds
    agent = cluster.agents["node0001-gpu0"]
    for step in range(1, 4):
        agent.progress(step, 4)
        dispatcher.tick()
    assert policy.rounds == rounds
    assert _get(store, first).progress.step == 3
    assert (_get(store, waiting).wait_reason, _get(store, waiting).eta) == ("no free GPU", T0 + 60)

    [late] = _submit(store)
    _tick_until(dispatcher, lambda: _get(store, late).wait_reason is not None)
    assert policy.rounds == rounds + 1
    assert _get(store, late).wait_reason == "no free GPU"


def test_submissions_while_every_agent_is_full_are_placed_twice_a_second_and_an_end_at_once(
    store: JobStore, tmp_path: Path
) -> None:
    first, _ = _submit(store, 2)
    cluster = FakeCluster()
    policy = Counting()
    dispatcher = _dispatcher(store, cluster, tmp_path, policy)
    dispatcher.refresh_every_s = 3600.0
    dispatcher.tick()
    rounds, started = policy.rounds, time.monotonic()

    late = []
    for _ in range(20):  # a submission every round, for a few rounds
        late += _submit(store)
        dispatcher.tick()
    _tick_until(dispatcher, lambda: all(_get(store, j).wait_reason for j in late))
    elapsed = time.monotonic() - started
    assert 1 <= policy.rounds - rounds <= 1 + elapsed / BUSY_PLACEMENT_EVERY_S  # not one per submission

    _agent_of(store, cluster, first).succeed()
    dispatcher.tick()  # the end frees the agent: placed in this round, not after the pause
    assert _get(store, first).state is JobState.SUCCEEDED
    assert len(store.running()) == 1


def _tick_until(dispatcher: Dispatcher, done: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    dispatcher.tick()
    while not done():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.02)
        dispatcher.tick()


def test_a_big_pool_s_inventories_are_read_a_slice_a_refresh_and_all_within_a_sweep(
    store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = FakeCluster(gpus=5, nodes_count=50)  # 250 agents: three refreshes read them all
    registry = _dispatcher(store, cluster, tmp_path).registry
    asked: list[str] = []
    answer = FakeAgent.inventory

    def inventory(agent: FakeAgent) -> AgentInventory:
        asked.append(agent.agent_id)
        return answer(agent)

    monkeypatch.setattr(FakeAgent, "inventory", inventory)

    counts = []
    for _ in range(3):
        before = len(asked)
        assert registry.refresh() == []
        counts.append(len(asked) - before)

    assert counts == [INVENTORY_SLICE, INVENTORY_SLICE, INVENTORY_SLICE]
    assert set(asked) == set(cluster.agents)  # every agent read within one sweep
    cluster.agents[asked[0]].kill()
    lost = []
    for _ in range(3):
        lost += registry.refresh()
    assert lost == [asked[0]]  # a dead idle agent is found within a sweep
