"""Rendering a long video's sliding windows (models.windows): one window at a time, each started
from the last frame of the video so far, as WanGP continues its image-to-video and 5B models.

`wanfarm render` runs every window in one process; the farm runs one window per attempt and keeps
each window's frames in object storage between them (gpu_agent.agent), so both call
`render_window` with the frames kept so far.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gpu_agent.storage import ObjectStore, verify_stored, window_key, windows_prefix
from models.profiles import Profile
from models.progress import Phase, Progress, ProgressFn, ignore_progress
from models.run_info import RunInfo, combined
from models.settings import Generation, Job
from processing.image import save_png

if TYPE_CHECKING:  # the controller imports the agent's modules, which must not load torch
    from models.checkpoint import Checkpoints
    from models.runner import PipelineHost


def render_window(
    host: PipelineHost,
    job: Job,
    generation: Generation,
    index: int,
    so_far: np.ndarray | None,
    folder: Path,
    profile: Profile = Profile.P4,
    on_progress: ProgressFn = ignore_progress,
    checkpoints: Checkpoints | None = None,
) -> tuple[np.ndarray, RunInfo]:
    """The frames window `index` of `job` adds to the video (uint8, frames first), rendered after
    `so_far` (the frames kept from the windows before it; None for the first), and its run.
    Progress counts over every window of the video."""
    window = job.windows[index]
    request = replace(generation.request, frames=window.frames)
    if (prompt := job.window_prompt(index)) is not None:  # multi_prompts_gen_type W/PW
        request = replace(request, prompt=prompt)
    if index > 0:
        if so_far is None or len(so_far) == 0:
            raise ValueError(f"window {index + 1} of {len(job.windows)} continues a video: give its frames")
        # WanGP's pre_video_frame: the last frame of the video so far starts the next window.
        folder.mkdir(parents=True, exist_ok=True)
        start = folder / f"window{index}_start.png"
        save_png(so_far[-1], start, {})
        request = replace(request, image_start=start)

    def overall(progress: Progress) -> None:
        if progress.phase is Phase.DENOISING and progress.total > 0:
            total = progress.total * len(job.windows)
            progress = Progress(index * progress.total + progress.step, total, progress.phase)
        on_progress(progress)

    result = host.generate(job.preset, request, profile, overall, checkpoints)
    return window.kept(result.frames[0]), result.info


def render_all_windows(
    host: PipelineHost,
    job: Job,
    generation: Generation,
    folder: Path,
    profile: Profile = Profile.P4,
    on_progress: ProgressFn = ignore_progress,
) -> tuple[np.ndarray, RunInfo]:
    """The whole long video of one generation, every window in turn, and how the windows ran."""
    kept: list[np.ndarray] = []
    runs: list[RunInfo] = []
    for index in range(len(job.windows)):
        so_far = np.concatenate(kept) if kept else None
        frames, run = render_window(host, job, generation, index, so_far, folder, profile, on_progress)
        kept.append(frames)
        runs.append(run)
    return np.concatenate(kept), combined(runs)


def stored_windows(store: ObjectStore, job_id: str) -> int:
    """How many of a long video's windows are in object storage, counted from the first."""
    keys = {stored.key for stored in store.list(windows_prefix(job_id))}
    done = 0
    while window_key(job_id, done) in keys:
        done += 1
    return done


def store_window(store: ObjectStore, job_id: str, index: int, frames: np.ndarray, folder: Path) -> str:
    """Keep window `index`'s frames in object storage for the attempts after this one; its key."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"window{index}.npz"
    np.savez_compressed(path, frames=frames)
    key = window_key(job_id, index)
    store.put_file(key, path, "application/octet-stream")
    verify_stored(store, key, path)
    return key


def load_window(store: ObjectStore, job_id: str, index: int, folder: Path) -> np.ndarray:
    """The frames window `index` of a long video kept, from object storage."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"window{index}.npz"
    store.get_file(window_key(job_id, index), path)
    with np.load(path) as data:
        return np.asarray(data["frames"])
