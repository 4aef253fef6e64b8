"""Rendering one resolved job into files: generate, post-process, encode with metadata.

The same path serves `wanfarm render` on one machine and, later, the Ray agent of each GPU.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from gpu_agent.long_video import render_all_windows
from models.catalogue import Output
from models.checkpoint import Checkpoints
from models.profiles import Profile
from models.progress import Phase, Progress, ProgressFn, ignore_progress
from models.run_info import RunInfo
from models.runner import PipelineHost
from models.settings import Generation, Job
from models.soundtrack import Soundtrack
from processing import plugins
from processing.audio import WAV_CODEC, encode_wav
from processing.audio_track import AUDIO_CODEC
from processing.image import save_png
from processing.video import encode_mp4

PRODUCER = "WanFarm 0.1.0"
VIDEO_CRF = 18


@dataclass(frozen=True)
class OutputFile:
    """One file a job produced, and what is in it."""

    path: Path
    seed: int
    width: int
    height: int
    frames: int
    fps: int | None
    run: RunInfo


def render_job(
    host: PipelineHost,
    job: Job,
    out_dir: Path,
    stem: str,
    profile: Profile = Profile.P4,
    on_progress: ProgressFn = ignore_progress,
    checkpoints: Callable[[int], Checkpoints | None] = lambda _generation: None,
) -> list[OutputFile]:
    """Render every generation of `job` into `out_dir` as `<stem>_seed<N>[_<i>].<ext>`; each
    generation saves its checkpoints where `checkpoints(index)` keeps them, and resumes from them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs: list[OutputFile] = []
    for index, generation in enumerate(job.generations):
        started = time.time()
        if job.windows:  # a long video: its sliding windows in turn, then one file
            with tempfile.TemporaryDirectory(prefix="wanfarm-windows-") as scratch:
                video, run = render_all_windows(host, job, generation, Path(scratch), profile, on_progress)
            on_progress(Progress(0, 1, Phase.ENCODING))
            outputs.append(write_video(job, generation, video, out_dir, stem, started, run))
            continue
        result = host.generate(job.preset, generation.request, profile, on_progress, checkpoints(index))
        on_progress(Progress(0, 1, Phase.ENCODING))
        for number, frames in enumerate(result.frames):
            name = f"{stem}_seed{generation.request.seed}" + (f"_{number}" if len(result.frames) > 1 else "")
            audio = result.audio[number] if result.audio is not None else None
            # Post-processing reads pictures; an audio model's output has none.
            clip = plugins.Clip(frames, job.preset.fps, generation.request.seed)
            processed = clip if job.preset.output is Output.AUDIO else _post_process(clip, job)
            outputs.append(_write(job, generation, processed, out_dir / name, started, result.info, audio))
    on_progress(Progress(1, 1, Phase.DONE))
    return outputs


def write_video(
    job: Job,
    generation: Generation,
    video: np.ndarray,
    out_dir: Path,
    stem: str,
    started: float,
    run: RunInfo,
) -> OutputFile:
    """A whole video of `generation` (a long video's stitched windows), post-processed and written
    with its metadata as `<stem>_seed<N>.mp4`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{stem}_seed{generation.request.seed}"
    # WanGP post-processes a long video window by window (RIFE carries a frame across them).
    windows = tuple(window.output for window in job.windows)
    clip = plugins.Clip(video, job.preset.fps, generation.request.seed, windows=windows)
    return _write(job, generation, _post_process(clip, job), out_dir / name, started, run)


def safe_stem(text: str, limit: int = 48) -> str:
    """A file-name stem from free text: a prompt, or a source such as "jobs.json[2]" -> "jobs-2"."""
    text = re.sub(r"\.(json|zip|mp4|png|wav)\b", "", text, flags=re.IGNORECASE)
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")
    return stem[:limit] or "job"


def _post_process(clip: plugins.Clip, job: Job) -> plugins.Clip:
    """The job's post-processors (processing.plugins: film grain, Lanczos, installed ones) in turn."""
    return plugins.run(job.postprocessors, clip, job.settings.as_dict())


def _write(
    job: Job,
    generation: Generation,
    clip: plugins.Clip,
    base: Path,
    started: float,
    run: RunInfo,
    audio: Soundtrack | None = None,
) -> OutputFile:
    ended = time.time()
    frames = clip.frames
    metadata = (
        generation.metadata
        | dict(clip.metadata)
        | {
            "type": f"{PRODUCER} - {job.preset.name}",
            "generation_time": round(ended - started),
            "creation_date": datetime.fromtimestamp(ended).isoformat(timespec="seconds"),
            "creation_timestamp": int(ended),
            "wanfarm": {k: v for k, v in asdict(run).items() if k != "peak_vram_bytes"},
        }
    )
    if job.postprocessors:  # what ran on the frames after the model, in order
        metadata["wanfarm"]["postprocessors"] = list(job.postprocessors)
    if audio is not None and job.preset.output is Output.VIDEO:  # LTX-2's, muxed beside the video
        metadata["wanfarm"]["audio"] = {
            "codec": AUDIO_CODEC,
            "sample_rate": audio.rate,
            "channels": audio.channels,
            "seconds": round(audio.seconds, 3),
        }
    if run.model_file:  # WanGP's record of the weight file rendered
        metadata["model_filename"] = run.model_file
    if job.preset.output is Output.AUDIO:
        assert audio is not None  # the runner returns a waveform per audio output
        path = base.parent / f"{base.name}.wav"
        metadata["wanfarm"]["audio"] = {
            "codec": WAV_CODEC,
            "sample_rate": audio.rate,
            "channels": audio.channels,
            "seconds": round(audio.seconds, 3),
        }
        encode_wav(audio, path, metadata)
        return OutputFile(path, generation.request.seed, 0, 0, 0, None, run)
    count, height, width, _ = frames.shape
    if job.preset.output is Output.IMAGE:
        path = base.parent / f"{base.name}.png"
        save_png(frames[0], path, metadata)
        return OutputFile(path, generation.request.seed, width, height, 1, None, run)
    assert clip.fps is not None  # the catalogue requires fps of video models
    path = base.parent / f"{base.name}.mp4"
    encode_mp4(frames, path, fps=clip.fps, crf=VIDEO_CRF, metadata=metadata, audio=audio)
    return OutputFile(path, generation.request.seed, width, height, count, clip.fps, run)
