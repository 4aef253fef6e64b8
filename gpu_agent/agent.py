"""The GPU agent: owns one GPU, its pipeline and its node's weight cache; one task on the GPU at a time.

It is a plain class; the controller's Ray wrapper turns it into an actor. `start` returns at once
and the task runs on a thread, so `events`, `cancel` and `inventory` are answered while it renders
(the actor is created with enough concurrency for that). Depth-one pipelining: once a task has left
the GPU (its last generation is encoding, then uploading) the agent takes one more, which renders
while the first finishes. An ended task's events stay in memory until another task has ended and
a new one starts, so the controller (or a restarted one) can read the end of a task it did not see
finish.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from gpu_agent.checkpoints import CheckpointCost, CheckpointPolicy, StoredCheckpoints, work_fingerprint
from gpu_agent.inventory import probe_inventory
from gpu_agent.long_video import load_window, render_window, store_window, stored_windows
from gpu_agent.lora_fetch import HubLoras, LoraCache, StoredLoras, lora_cache_budget
from gpu_agent.messages import (
    OBJECT_REF,
    UPLOADS_PREFIX,
    AgentConfig,
    AgentEvent,
    AgentInventory,
    EventKind,
    RenderTask,
)
from gpu_agent.storage import (
    S3WeightMirror,
    StorageHealth,
    StorageMismatch,
    checkpoints_prefix,
    open_store,
    output_key,
    verify_stored,
    windows_prefix,
)
from gpu_agent.storage_outage import OUTAGE_WAIT_S, answers_now, is_outage, wait_for_storage
from gpu_agent.workspace import Workspace, default_parent
from models.attention import AttentionMode
from models.catalogue import get_model
from models.progress import Cancelled, Phase, Preempted, Progress
from models.run_info import RunInfo, combined
from models.settings import Attachments, Job, parse_settings, resolve
from models.weights import WeightCache
from models.windows import stitch
from processing.queue_zip import ATTACHMENT_KEYS

if TYPE_CHECKING:
    from models.checkpoint import Checkpoints
    from models.runner import PipelineHost

CONTENT_TYPES = {".mp4": "video/mp4", ".png": "image/png", ".wav": "audio/wav"}
T = TypeVar("T")
# How much a declared agent (rendering on the CPU) lowers its priority: to 10 of 19 from 0.
CPU_RENDER_NICENESS = 10


class WorkChanged(ValueError):
    """The task's settings no longer resolve to the work it was placed as (the catalogue changed
    since submit): rendering them would run something the scheduler did not place."""


class GpuAgent:
    """One GPU's worker."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.storage_health = StorageHealth()
        self.store = open_store(config.storage, self.storage_health)
        # Job folders go under a locked folder of its own; starting, it removes what dead agents left.
        self.workspace = Workspace.claim(default_parent(), config.agent_id)
        mirror = S3WeightMirror(self.store) if config.weight_mirror else None
        # A node that names its own cache ($WANFARM_CACHE, e.g. a hostPath in the container image)
        # keeps it across restarts of its Ray node; otherwise the farm's per-node folder is used.
        cache_dir = Path(os.environ["WANFARM_CACHE"]) if os.environ.get("WANFARM_CACHE") else config.cache_dir
        self.cache = WeightCache(cache_dir, budget_bytes=config.cache_budget_bytes, mirror=mirror)
        # torch and diffusers load here, in the actor, never in the controller that creates it.
        import torch

        from models.loras import FirstFound, LoraLibrary
        from models.runner import PipelineHost

        if config.declared_gpu:
            # Ray gives an actor that holds no CPU one thread; a declared agent renders on the CPU,
            # so it takes its share of the node's cores, as `wanfarm render` takes them all.
            torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // max(config.node_agents, 1)))
            # Rendering on the CPU is batch work beside the controller's interactive API on the same
            # cores: it yields to it (a GPU agent's CPU share is small and keeps its priority).
            os.nice(CPU_RENDER_NICENESS)
        device = "cpu" if config.declared_gpu else None
        # As with the cache, a node's own LoRA folder ($WANFARM_LORAS) comes before the farm's; a
        # LoRA in neither is fetched from the farm's uploads, or a hub URL from the hub, into a
        # cache beside the weights, kept within its own budget.
        lora_root = Path(os.environ["WANFARM_LORAS"]) if os.environ.get("WANFARM_LORAS") else config.lora_dir
        self.lora_cache = LoraCache(cache_dir / "loras", lora_cache_budget(config.lora_cache_bytes))
        uploaded = StoredLoras(self.store, cache_dir / "loras", self.lora_cache)
        self.host_loras = LoraLibrary(lora_root, fallback=FirstFound(uploaded, HubLoras(self.lora_cache)))
        self.host: PipelineHost = PipelineHost(
            self.cache,
            device=device,
            attention_mode=AttentionMode(config.attention),
            loras=self.host_loras,
        )
        self._lock = threading.Lock()
        self._events: list[AgentEvent] = []
        self._seq = 0
        self._slots: list[_Slot] = []  # the tasks held, oldest first: at most two, one on the GPU
        self._last_ended: tuple[str, int] | None = None  # the task that ended last
        self._cancel: set[tuple[str, int]] = set()
        self._preempt: set[tuple[str, int]] = set()  # tasks to stop at their next step boundary
        self.checkpoint_policy = CheckpointPolicy(config.checkpoint_steps, config.checkpoint_seconds)

    def ping(self) -> str:
        return self.config.agent_id

    def inventory(self) -> AgentInventory:
        with self._lock:
            slots = list(self._slots)
            accepts_next = self._accepts_next()
        current = slots[-1].key if slots else None
        previous = slots[0].key if len(slots) == 2 else None
        found = probe_inventory(self.config, self.cache, self.host.hot_model, current, self.storage_health)
        return replace(
            found,
            previous_job=previous[0] if previous else None,
            previous_attempt=previous[1] if previous else None,
            accepts_next=accepts_next,
            loras=self.lora_cache.held() + self.host_loras.names(),
            attention_modes=tuple(sorted(self.host.attention_modes)),
        )

    def start(self, task: RenderTask) -> bool:
        """Begin a task in the background; False unless idle or its only task has left the GPU."""
        with self._lock:
            if self._slots and not self._accepts_next():
                return False
            self._slots.append(_Slot((task.job_id, task.attempt)))
            # Events of ended tasks go, but the last one's: the controller sent this task once
            # that one had left the GPU, and it may have ended since, unread.
            kept = {slot.key for slot in self._slots} | {self._last_ended}
            self._events = [e for e in self._events if (e.job_id, e.attempt) in kept]
        thread = threading.Thread(target=self._run, args=(task,), name=f"task-{task.job_id}", daemon=True)
        thread.start()
        return True

    def events(self, after_seq: int = 0) -> list[AgentEvent]:
        """Events with seq > after_seq, in order; an ended task's stay until the next task starts."""
        with self._lock:
            return [e for e in self._events if e.seq > after_seq]

    def cancel(self, job_id: str, attempt: int) -> None:
        """Stop the task between steps; it ends with a CANCELED event."""
        with self._lock:
            self._cancel.add((job_id, attempt))

    def preempt(self, job_id: str, attempt: int) -> None:
        """Stop the task at its next step boundary, its state checkpointed; it ends with a PREEMPTED
        event, or as it would have if it was past its denoising already."""
        with self._lock:
            self._preempt.add((job_id, attempt))

    def prefetch(self, model_id: str) -> bool:
        """Warm a model's weights into the node cache while idle; False when busy."""
        with self._lock:
            if self._slots:
                return False
        # What a render loads: a definition with a file of its own warms its base's folder and
        # that file, not a copy of the base's folder under its own id.
        self.host.fetch(get_model(model_id))
        return True

    def _run(self, task: RenderTask) -> None:
        work = self.workspace.job_folder(task.job_id)
        cost = CheckpointCost()
        try:
            keys, run, window = self._through_outages(
                task, lambda: self._render(task, _emptied(work), cost), rerender=True
            )
            for key in keys:
                self._emit(task, EventKind.OUTPUT, output_key=key)
            if window is not None:  # a long video's window is stored; the job goes on
                self._emit(task, EventKind.WINDOW, progress=window, run=run, cost=cost)
            else:
                # Its outputs are stored: no later attempt resumes it.
                self._through_outages(task, lambda: self.store.delete_prefix(checkpoints_prefix(task.job_id)))
                self._emit(task, EventKind.SUCCEEDED, run=run, cost=cost)
        except Cancelled:
            self._emit(task, EventKind.CANCELED, cost=cost)
        except Preempted as stopped:
            step, total = stopped.args if len(stopped.args) == 2 else (0, 0)
            self._emit(task, EventKind.PREEMPTED, progress=Progress(step, total, Phase.DENOISING), cost=cost)
        except Exception as error:  # every failure reaches the controller as an event
            traceback.print_exc()
            self._emit(task, EventKind.FAILED, error=f"{type(error).__name__}: {error}", cost=cost)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            with self._lock:
                self._slots = [slot for slot in self._slots if slot.key != (task.job_id, task.attempt)]
                self._last_ended = (task.job_id, task.attempt)
                self._cancel.discard((task.job_id, task.attempt))
                self._preempt.discard((task.job_id, task.attempt))

    def _through_outages(self, task: RenderTask | None, call: Callable[[], T], rerender: bool = False) -> T:
        """`call()`, and again once object storage answers after an outage, for up to OUTAGE_WAIT_S
        (gpu_agent.storage_outage): an outage fails no attempt it does not outlast. A `rerender`
        call runs again only while the task holds the GPU: once it left, the next task renders in
        this process (the chaos suite saw two renders at once fail)."""
        deadline = time.monotonic() + OUTAGE_WAIT_S
        while True:
            try:
                return call()
            except Exception as error:
                if rerender and task is not None and not self._on_gpu(task):
                    raise
                if not is_outage(error) or answers_now(self.store):
                    raise
                if not wait_for_storage(self.store, deadline - time.monotonic()):
                    raise
                if task is not None:
                    self._check_cancel(task)

    def _on_gpu(self, task: RenderTask) -> bool:
        with self._lock:
            return any(slot.key == (task.job_id, task.attempt) and slot.on_gpu for slot in self._slots)

    def _checkpoints(self, task: RenderTask, part: str, cost: CheckpointCost) -> Checkpoints:
        """Where `part` of the task's job (a generation, a window) keeps its checkpoints; a
        preemption asks for one at the next boundary."""
        return StoredCheckpoints(
            self.store,
            task.job_id,
            part,
            work_fingerprint(task.settings, part),
            self.checkpoint_policy,
            cost,
            stop_requested=lambda: (task.job_id, task.attempt) in self._preempt,
        )

    def _render(
        self, task: RenderTask, work: Path, cost: CheckpointCost
    ) -> tuple[list[str], RunInfo, Progress | None]:
        """The attempt's output keys, how it ran, and for a long video's window that is not its
        last, how many of its windows are done (the job goes on)."""
        from gpu_agent.render import render_job, safe_stem

        settings = self._fetch_inputs(task.settings, work / "inputs")
        resolved = resolve(parse_settings(settings), Attachments.inside(work / "inputs"), task.job_id)
        job = _as_placed(resolved, task)  # never render what was not placed
        if len(job.windows) > 1:
            return self._render_window(task, job, work, cost)
        generations_left = len(job.generations)

        def on_progress(progress: Progress) -> None:
            nonlocal generations_left
            self._check_cancel(task)
            self._check_preempt(task, progress)
            if progress.phase is Phase.ENCODING:
                generations_left -= 1
                if generations_left == 0:
                    # Before the event says so: whoever reads "encoding" may send the next task.
                    self._leave_gpu(task)
            self._emit(task, EventKind.PROGRESS, progress=progress)

        with self.cache.using(job.preset.id):
            outputs = render_job(
                self.host,
                job,
                work / "out",
                safe_stem(job.preset.id),
                task.profile,
                on_progress,
                lambda generation: self._checkpoints(task, f"gen{generation}", cost),
            )
        self._emit(task, EventKind.PROGRESS, progress=Progress(0, len(outputs), Phase.ENCODING))
        keys = []
        for output in outputs:
            self._check_cancel(task)  # between uploads too: a pipelined task may spend a while here
            keys.append(self._store_output(task.job_id, output.path))
        return keys, combined([o.run for o in outputs]), None

    def _render_window(
        self, task: RenderTask, job: Job, work: Path, cost: CheckpointCost
    ) -> tuple[list[str], RunInfo, Progress | None]:
        """The next window of a long video, after those object storage holds: stored for the next
        attempt, or, the last, stitched with them into the job's output."""
        from gpu_agent.render import safe_stem, write_video

        started = time.time()
        (generation,) = job.generations  # settings refuse repeats of a long video
        count, index = len(job.windows), stored_windows(self.store, task.job_id)
        kept = work / "windows"
        so_far = load_window(self.store, task.job_id, index - 1, kept) if index else None

        def on_progress(progress: Progress) -> None:
            self._check_cancel(task)
            self._check_preempt(task, progress)
            self._emit(task, EventKind.PROGRESS, progress=progress)

        checkpoints = self._checkpoints(task, f"window{index}", cost)
        with self.cache.using(job.preset.id):
            frames, run = render_window(
                self.host,
                job,
                generation,
                index,
                so_far,
                work / "scratch",
                task.profile,
                on_progress,
                checkpoints,
            )
        self._check_cancel(task)
        if index + 1 < count:
            store_window(self.store, task.job_id, index, frames, kept)
            return [], run, Progress(index + 1, count, Phase.DONE)
        self._leave_gpu(task)
        on_progress(Progress(0, 1, Phase.ENCODING))
        # The window before this one is loaded already (so_far): the others are fetched once.
        earlier = [load_window(self.store, task.job_id, i, kept) for i in range(index - 1)]
        video = stitch([*earlier, *([so_far] if so_far is not None else []), frames])
        output = write_video(job, generation, video, work / "out", safe_stem(job.preset.id), started, run)
        key = self._store_output(task.job_id, output.path)
        self.store.delete_prefix(windows_prefix(task.job_id))  # the output holds them now
        return [key], run, None

    def _check_cancel(self, task: RenderTask) -> None:
        if (task.job_id, task.attempt) in self._cancel:
            raise Cancelled(task.job_id)

    def _check_preempt(self, task: RenderTask, progress: Progress) -> None:
        # Only while denoising: a task past it has its outputs nearly done, and finishing is cheaper.
        if progress.phase is Phase.DENOISING and (task.job_id, task.attempt) in self._preempt:
            raise Preempted(progress.step, progress.total)

    def _accepts_next(self) -> bool:
        """Under the lock: one task held, and it has left the GPU."""
        return len(self._slots) == 1 and not self._slots[0].on_gpu

    def _leave_gpu(self, task: RenderTask) -> None:
        with self._lock:
            for slot in self._slots:
                if slot.key == (task.job_id, task.attempt):
                    slot.on_gpu = False

    def _store_output(self, job_id: str, path: Path) -> str:
        """Upload one output (the store retries) and check it arrived whole; its key."""
        key = output_key(job_id, path.name)
        content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        self._through_outages(None, lambda: self.store.put_file(key, path, content_type))
        try:
            verify_stored(self.store, key, path)
        except StorageMismatch as error:  # the attempt fails: SUCCEEDED only for verified outputs
            self.storage_health.record(f"verify {key}", error)
            raise
        return key

    def _fetch_inputs(self, settings: dict[str, Any], folder: Path) -> dict[str, Any]:
        """Settings with object references replaced by downloaded local files."""
        folder.mkdir(parents=True, exist_ok=True)
        local = dict(settings)
        for key in ATTACHMENT_KEYS:
            value = local.get(key)
            if isinstance(value, str) and value.startswith(OBJECT_REF):
                local[key] = self._download(value, folder)
            elif isinstance(value, list):
                local[key] = [
                    self._download(v, folder) if isinstance(v, str) and v.startswith(OBJECT_REF) else v
                    for v in value
                ]
        return local

    def _download(self, reference: str, folder: Path) -> str:
        key = reference.removeprefix(OBJECT_REF)
        if not key.startswith(UPLOADS_PREFIX):
            # Only the API writes references, and only to uploads: anything else (another job's
            # outputs, weights) is never fetched into a job, whatever its settings say.
            raise ValueError(f"attachment {reference!r} is not an upload of this farm")
        dest = folder / Path(key).name
        self.store.get_file(key, dest)
        return dest.name

    def _emit(
        self,
        task: RenderTask,
        kind: EventKind,
        progress: Progress | None = None,
        output_key: str | None = None,
        error: str | None = None,
        run: RunInfo | None = None,
        cost: CheckpointCost | None = None,
    ) -> None:
        with self._lock:
            self._seq += 1
            event = AgentEvent(
                seq=self._seq,
                job_id=task.job_id,
                attempt=task.attempt,
                kind=kind,
                step=progress.step if progress else 0,
                total=progress.total if progress else 0,
                phase=progress.phase.value if progress else "",
                output_key=output_key,
                error=error,
                load_seconds=run.load_seconds if run else 0.0,
                render_seconds=run.generate_seconds if run else 0.0,
                peak_vram_bytes=run.peak_vram_bytes if run else 0,
                weights_source=run.weights_source if run else "hot",
                bytes_fetched=run.bytes_fetched if run else 0,
                resumed_from=run.resumed_from if run else 0,
                checkpoint_saves=cost.saves if cost else 0,
                checkpoint_bytes=cost.bytes if cost else 0,
                checkpoint_seconds=round(cost.seconds, 3) if cost else 0.0,
            )
            # Progress of one task replaces its previous progress: a poller needs only the latest.
            last = self._events[-1] if self._events else None
            if (
                kind is EventKind.PROGRESS
                and last is not None
                and last.kind is EventKind.PROGRESS
                and (last.job_id, last.attempt) == (task.job_id, task.attempt)
            ):
                self._events[-1] = event
            else:
                self._events.append(event)


def _emptied(folder: Path) -> Path:
    """The folder, emptied: an attempt rendered again after an outage starts from a clean one."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class _Slot:
    """A task the agent holds: on the GPU until its last generation starts encoding."""

    key: tuple[str, int]  # (job id, attempt)
    on_gpu: bool = True


def _as_placed(job: Job, task: RenderTask) -> Job:
    """The resolved job, when it is the work the task was placed as (under the profile it forces, if
    any); else WorkChanged names both."""
    if job.work != task.work:
        raise WorkChanged(
            f"placed as {task.work.describe()} but these settings now resolve to {job.work.describe()}; "
            "resubmit the job to place it as it now is"
        )
    missing = sorted(set(task.plugins) - set(job.postprocessors))
    if missing:  # placed here by mistake, or uninstalled since: never render without them
        raise WorkChanged(f"needs the post-processors {', '.join(missing)}, not installed on this node")
    forced = job.overrides.profile if job.overrides is not None else None
    if forced not in (None, task.profile):
        raise WorkChanged(f"override_profile forces profile {forced}; the job was placed at {task.profile}")
    return job
