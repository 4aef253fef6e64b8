"""One prompt per sliding window (multi_prompts_gen_type W and PW, Wan2GP 8681e9f7 wgp.py
generate_video: window i reads prompt unit i, the last unit every window past it): a long video
of the tiny Wan 2.2 5B renders each window with its own prompt, exactly as a video of that one
prompt renders that window."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gpu_agent.long_video import render_window
from models.runner import PipelineHost
from models.settings import Job, parse_settings, resolve
from models.weights import WeightCache
from tests.torch_threads import one_torch_thread

LONG = {"model_type": "wan-ti2v-tiny", "video_length": 25, "sliding_window_size": 9, "seed": 5}
LINES = ["a red fox in the snow", "a heron over a lake"]


def job(tmp_path: Path, prompt: str, mode: str = "FG") -> Job:
    return resolve(parse_settings(LONG | {"prompt": prompt, "multi_prompts_gen_type": mode}), tmp_path)


@pytest.fixture(scope="module")
def host(weight_cache: WeightCache) -> Iterator[PipelineHost]:
    with one_torch_thread():
        yield PipelineHost(weight_cache, device="cpu")


def window(host: PipelineHost, job: Job, index: int, so_far: np.ndarray, folder: Path) -> np.ndarray:
    frames, _ = render_window(host, job, job.generations[0], index, so_far, folder)
    return frames


def test_each_window_renders_its_own_line_and_the_last_line_the_windows_past_it(
    host: PipelineHost, tmp_path: Path
) -> None:
    windowed = job(tmp_path, "\n".join(LINES), "W")
    assert windowed.window_prompts == tuple(LINES) and len(windowed.windows) == 3
    # The video so far, as the first window of either job would leave it (the same first line).
    first = window(host, windowed, 0, np.zeros((0,)), tmp_path / "w0")
    assert np.array_equal(first, window(host, job(tmp_path, LINES[0]), 0, np.zeros((0,)), tmp_path / "f0"))
    so_far = np.concatenate([first, first])  # any frames: the window starts from the last one
    second = window(host, windowed, 1, so_far, tmp_path / "w1")
    assert np.array_equal(second, window(host, job(tmp_path, LINES[1]), 1, so_far, tmp_path / "h1"))
    assert not np.array_equal(second, window(host, job(tmp_path, LINES[0]), 1, so_far, tmp_path / "f1"))
    third = window(host, windowed, 2, so_far, tmp_path / "w2")  # past the lines: the last one
    assert np.array_equal(third, window(host, job(tmp_path, LINES[1]), 2, so_far, tmp_path / "h2"))
    # The output's metadata keeps every window's prompt, as WanGP writes it back.
    metadata = windowed.generations[0].metadata
    assert metadata["prompt"] == "\n".join(LINES) and metadata["multi_prompts_gen_type"] == "W"
