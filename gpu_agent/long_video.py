"""Rendering a long video's sliding windows (models.windows): one window at a time, each started
from the last frame of the video so far, as WanGP continues its image-to-video and 5B models.

`wanfarm render` runs every window in one process; the farm runs one window per attempt and keeps
each window's frames in object storage between them (gpu_agent.agent), so both call
`render_window` with the frames kept so far.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from models.profiles import Profile
from models.progress import Phase, Progress, ProgressFn, ignore_progress
from models.runner import PipelineHost, RunInfo
from models.settings import Generation, Job
from processing.image import save_png


def render_window(
    host: PipelineHost,
    job: Job,
    generation: Generation,
    index: int,
    so_far: np.ndarray | None,
    folder: Path,
    profile: Profile = Profile.P4,
    on_progress: ProgressFn = ignore_progress,
) -> tuple[np.ndarray, RunInfo]:
    """The frames window `index` of `job` adds to the video (uint8, frames first), rendered after
    `so_far` (the frames kept from the windows before it; None for the first), and its run.
    Progress counts over every window of the video."""
    window = job.windows[index]
    request = replace(generation.request, frames=window.frames)
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

    result = host.generate(job.preset, request, profile, overall)
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
    return np.concatenate(kept), over_windows(runs)


def over_windows(runs: list[RunInfo]) -> RunInfo:
    """One video's run from its windows': times and steps add up, the peak is the highest, the
    weights came from where the first window found them."""
    return replace(
        runs[0],
        load_seconds=sum(r.load_seconds for r in runs),
        generate_seconds=sum(r.generate_seconds for r in runs),
        peak_vram_bytes=max(r.peak_vram_bytes for r in runs),
        bytes_fetched=sum(r.bytes_fetched for r in runs),
        steps_run=sum(r.steps_run for r in runs),
        steps_skipped=sum(r.steps_skipped for r in runs),
    )
