"""An agent's outputs survive a brief storage failure and count only once verified; a node whose
storage fails says so in its inventory and in /metrics; and an agent's job folders do not outlive
it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.metrics import FarmMetrics
from controller.store import JobStore
from gpu_agent.agent import GpuAgent
from gpu_agent.messages import AgentEvent, EventKind, RenderTask
from gpu_agent.storage import ObjectStore, StoredObject, output_key
from gpu_agent.workspace import Workspace, default_parent
from models.progress import Phase
from tests.job_records import placed_task
from tests.unit.tiny_agent import SETTINGS, agent

JOB = "job-1"


def run_to_the_end(
    worker: GpuAgent,
    on_encoding: threading.Event | None = None,
    settings: dict[str, object] = SETTINGS,
    task: RenderTask | None = None,
) -> AgentEvent:
    """Start the job (placed as its settings resolve now, unless `task` says otherwise), wait until it
    ended, and return its final event; `on_encoding` is set once the outputs are being encoded and
    uploaded."""
    assert worker.start(task or placed_task(JOB, settings))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        events = worker.events()
        if on_encoding is not None and any(e.phase == Phase.ENCODING.value for e in events):
            on_encoding.set()
        # The agent is done once it reports no current job: its job folder is gone by then.
        if events and events[-1].kind.final and worker.inventory().current_job is None:
            return events[-1]
        time.sleep(0.01)
    raise AssertionError("the job did not end in 300 s")


def test_an_output_folder_briefly_unusable_delays_the_upload_but_the_job_succeeds(
    worker: GpuAgent, tmp_path: Path
) -> None:
    outputs = tmp_path / "objects" / "jobs" / JOB / "outputs"
    outputs.parent.mkdir(parents=True)
    # A file where the folder goes: every upload fails while it is here (chmod would not stop root).
    outputs.write_bytes(b"in the way")
    uploading = threading.Event()
    seen_work: list[Path] = []

    def clear_it_half_a_second_after_uploads_begin() -> None:
        uploading.wait(300)
        seen_work.extend(worker.workspace.root.iterdir())
        time.sleep(0.5)
        outputs.unlink()

    helper = threading.Thread(target=clear_it_half_a_second_after_uploads_begin)
    helper.start()
    last = run_to_the_end(worker, uploading)
    helper.join()
    assert last.kind is EventKind.SUCCEEDED, last.error
    [stored] = [e.output_key for e in worker.events() if e.kind is EventKind.OUTPUT]
    assert stored is not None and (tmp_path / "objects" / stored).stat().st_size > 0
    inventory = worker.inventory()
    assert inventory.storage_errors >= 1
    assert f"put {output_key(JOB, '')}" in (inventory.last_storage_error or "")
    # The job worked in a folder under the agent's own, and left nothing there.
    assert [p.name.startswith(f"{JOB}-") for p in seen_work] == [True]
    assert list(worker.workspace.root.iterdir()) == []


class ShortWrites:
    """A store whose uploads lose their last byte without an error (a torn write)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner

    def put_file(self, key: str, path: Path, content_type: str) -> StoredObject:
        stored = self.inner.put_file(key, path, content_type)
        target = self.inner.local_path(key)
        assert target is not None
        target.write_bytes(target.read_bytes()[:-1])
        return stored

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_an_output_that_did_not_arrive_whole_fails_the_attempt_clearly(
    worker: GpuAgent, tmp_path: Path
) -> None:
    worker.store = ShortWrites(worker.store)  # type: ignore[assignment]
    last = run_to_the_end(worker)
    assert last.kind is EventKind.FAILED
    key = output_key(JOB, "")
    assert last.error is not None and last.error.startswith(f"StorageMismatch: {key}")
    assert "bytes in storage" in last.error
    assert not [e for e in worker.events() if e.kind is EventKind.OUTPUT]
    inventory = worker.inventory()
    assert inventory.storage_errors == 1 and (inventory.last_storage_error or "").startswith(f"verify {key}")


def test_an_agent_that_starts_removes_what_killed_agents_left_and_keeps_live_agents_work(
    tmp_path: Path, cache_dir: Path, temp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANFARM_CACHE", raising=False)
    parent = default_parent()
    # What killed agents left: this agent in an earlier life, and one of a Ray node since restarted.
    for stale in (parent / "n1-gpu0-0a1b2c3d" / f"{JOB}-x1", parent / "old-node-gpu0-5e6f7a8b" / "job-0-x2"):
        stale.mkdir(parents=True)
        (stale / "frame.png").write_bytes(b"png")
        (parent / f"{stale.parent.name}.lock").touch()  # nobody holds it: its agent is gone
    alive = Workspace.claim(parent, "n2-gpu0")  # an agent of another node on this machine, rendering
    (alive.job_folder("job-9") / "frame.png").write_bytes(b"png")

    started = agent(tmp_path, cache_dir)
    try:
        kept = {started.workspace.root, alive.root}
        assert set(parent.iterdir()) == kept | {root.with_name(f"{root.name}.lock") for root in kept}
        assert started.workspace.root.name.startswith("n1-gpu0-")
        assert list(started.workspace.root.iterdir()) == []
        assert [p.name[:6] for p in alive.root.iterdir()] == ["job-9-"]
    finally:
        started.workspace.release()
        alive.release()


def test_metrics_count_each_agents_storage_errors(
    worker: GpuAgent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker.storage_health.record("put jobs/j/outputs/v.mp4", PermissionError("denied"))
    worker.storage_health.record("put jobs/j/outputs/v.mp4", PermissionError("denied"))
    metrics = FarmMetrics()
    with JobStore(tmp_path / "jobs.db") as store:
        metrics.attach(store, lambda: [worker.inventory()])
        text = metrics.exposition().decode()
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "wanfarm_storage_errors"]
    [sample] = [s for s in family.samples if s.name == "wanfarm_storage_errors_total"]
    assert sample.labels == {"agent": "n1-gpu0", "node": "n1"} and sample.value == 2


def test_an_agent_fetches_no_stored_object_but_an_upload_into_a_job(worker: GpuAgent, tmp_path: Path) -> None:
    # Another job's output sits in the same storage; settings naming it must not pull it into this job.
    other = tmp_path / "objects" / "jobs" / "job-0" / "outputs" / "secret.png"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"not yours")
    settings = {**SETTINGS, "image_start": "object:jobs/job-0/outputs/secret.png"}
    end = run_to_the_end(worker, settings=settings)
    assert end.kind is EventKind.FAILED
    assert "is not an upload of this farm" in (end.error or "")
