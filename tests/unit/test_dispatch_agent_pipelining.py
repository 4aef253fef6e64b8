"""Depth-one pipelining on a real agent (tiny model, CPU): once its task has left the GPU it takes
one more and refuses a third, reports both, and a cancel stops either; a task between two
generations still holds the GPU."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpu_agent.agent import GpuAgent
from gpu_agent.messages import AgentEvent, EventKind
from gpu_agent.storage import ObjectStore, StoredObject
from tests.job_records import placed_task
from tests.unit.tiny_agent import SETTINGS

WAIT_S = 300


class Gate:
    """Holds every call that passes it until opened; `reached` is set by the first caller."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.opened = threading.Event()

    def hold(self) -> None:
        self.reached.set()
        assert self.opened.wait(WAIT_S), "the test never opened the gate"


class GatedUploads:
    """A store whose uploads wait at a gate."""

    def __init__(self, inner: ObjectStore, gate: Gate) -> None:
        self.inner = inner
        self.gate = gate

    def put_file(self, key: str, path: Path, content_type: str) -> StoredObject:
        self.gate.hold()
        return self.inner.put_file(key, path, content_type)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def _gate_generations(worker: GpuAgent, from_call: int, gate: Gate) -> None:
    """Generations from the `from_call`-th on wait at `gate` before they start."""
    real: Callable[..., Any] = worker.host.generate
    calls = 0

    def generate(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls >= from_call:
            gate.hold()
        return real(*args, **kwargs)

    worker.host.generate = generate  # type: ignore[method-assign]


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def _ends(worker: GpuAgent, *job_ids: str) -> dict[str, AgentEvent]:
    """Each job's final event, once all have ended."""

    def finals() -> dict[str, AgentEvent]:
        return {e.job_id: e for e in worker.events() if e.kind.final}

    _until(lambda: set(job_ids) <= finals().keys(), f"{job_ids} to end")
    return finals()


def test_an_agent_uploading_its_task_takes_one_more_refuses_a_third_and_both_succeed(
    worker: GpuAgent,
) -> None:
    uploads = Gate()
    worker.store = GatedUploads(worker.store, uploads)  # type: ignore[assignment]
    assert worker.start(placed_task("a", SETTINGS))
    uploads.reached.wait(WAIT_S)
    assert worker.inventory().accepts_next

    assert worker.start(placed_task("b", dict(SETTINGS, seed=4)))
    assert not worker.start(placed_task("c", dict(SETTINGS, seed=5)))
    held = worker.inventory()
    assert (held.current_job, held.previous_job, held.accepts_next) == ("b", "a", False)
    uploads.opened.set()

    ends = _ends(worker, "a", "b")
    assert [ends[job].kind for job in ("a", "b")] == [EventKind.SUCCEEDED, EventKind.SUCCEEDED], ends
    outputs = {e.job_id for e in worker.events() if e.kind is EventKind.OUTPUT}
    assert outputs == {"a", "b"}
    # Its job folders removed after the last event, the agent holds nothing.
    _until(lambda: worker.inventory().current_job is None, "the agent to let go of its tasks")
    assert (worker.inventory().previous_job, worker.inventory().accepts_next) == (None, False)


def test_a_task_between_two_generations_still_holds_the_gpu(worker: GpuAgent) -> None:
    second = Gate()
    _gate_generations(worker, from_call=2, gate=second)
    assert worker.start(placed_task("a", dict(SETTINGS, repeat_generation=2)))
    second.reached.wait(WAIT_S)  # the first generation was encoded; the second waits to start

    assert not worker.inventory().accepts_next
    assert not worker.start(placed_task("b", SETTINGS))
    second.opened.set()
    assert _ends(worker, "a")["a"].kind is EventKind.SUCCEEDED


def test_a_cancel_stops_either_task_of_a_pipelined_agent(worker: GpuAgent) -> None:
    gate = Gate()
    worker.store = GatedUploads(worker.store, gate)  # type: ignore[assignment]
    _gate_generations(worker, from_call=2, gate=gate)  # the second task waits before denoising
    assert worker.start(placed_task("a", dict(SETTINGS, batch_size=2)))  # two uploads
    gate.reached.wait(WAIT_S)
    assert worker.start(placed_task("b", SETTINGS))

    worker.cancel("a", 1)
    worker.cancel("b", 1)
    gate.opened.set()

    ends = _ends(worker, "a", "b")
    assert [ends[job].kind for job in ("a", "b")] == [EventKind.CANCELED, EventKind.CANCELED], ends
    assert not [e for e in worker.events() if e.kind is EventKind.OUTPUT]


def test_the_end_of_a_task_stays_readable_after_the_next_task_starts(worker: GpuAgent) -> None:
    assert worker.start(placed_task("a", SETTINGS))
    _until(lambda: worker.inventory().current_job is None, "the first task to end")

    assert worker.start(placed_task("b", dict(SETTINGS, seed=4)))  # sent before its end was read

    assert [e.kind for e in worker.events() if e.job_id == "a" and e.kind.final] == [EventKind.SUCCEEDED]
    _ends(worker, "b")
