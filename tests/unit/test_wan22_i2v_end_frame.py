"""Wan 2.2 I2V (i2v_2_2) from a start and an end image, rendered on a tiny two-expert image-to-video
Wan laid out as the real one (36 input channels, no image encoder, boundary 0.9) through the path
`wanfarm render` and the agents take: the end image changes the video, the output's metadata
records both images, and the hot pipeline renders its next job as a fresh one would.

WanGP's i2v_2_2 takes an end image ("E" in its image_prompt_types) at deepbeepmeep/Wan2GP 8681e9f7
(models/wan/wan_handler.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gpu_agent.render import render_job
from models.catalogue import get_model
from models.runner import PipelineHost
from models.settings import Job, parse_settings, resolve
from models.weights import WeightCache
from processing.metadata import read_metadata
from processing.video import read_mp4
from tests.tiny_requests import cache_as
from tests.two_experts import two_expert_wan_i2v

PRESET = get_model("i2v_2_2")
BOUNDARY = 0.9  # Wan-AI's Wan2.2-I2V-A14B-Diffusers switches experts there
# The preset's smallest canvas; two steps keep a render to a few seconds on a busy 2-core machine.
SETTINGS = {
    "model_type": "i2v_2_2",
    "prompt": "a fox crossing a river",
    "resolution": "256x256",
    "video_length": 5,
    "num_inference_steps": 2,
    "seed": 3,
    "image_start": "start.png",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A red start image and a blue end image."""
    folder = tmp_path_factory.mktemp("images")
    Image.new("RGB", (64, 64), (230, 40, 30)).save(folder / "start.png")
    Image.new("RGB", (64, 64), (20, 60, 220)).save(folder / "end.png")
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeightCache]:
    """A weight cache holding the tiny two-expert image-to-video Wan as Wan 2.2 I2V A14B."""
    cache = WeightCache(tmp_path_factory.mktemp("weights"))
    cache_as(cache, PRESET, two_expert_wan_i2v(BOUNDARY))
    yield cache


def job(folder: Path, **changes: Any) -> Job:
    return resolve(parse_settings(SETTINGS | changes), folder)


def test_the_tiny_keeps_wan22_i2vs_layout() -> None:
    pipe = two_expert_wan_i2v(BOUNDARY)
    assert type(pipe).__name__ == PRESET.pipeline
    assert pipe.transformer.config.in_channels == pipe.transformer_2.config.in_channels == 36
    assert (pipe.image_encoder, pipe.config.boundary_ratio, pipe.config.expand_timesteps) == (
        None,
        0.9,
        False,
    )


def test_a_start_and_end_job_renders_with_both_images_recorded_and_the_next_job_as_fresh(
    folder: Path, cache: WeightCache, tmp_path: Path
) -> None:
    host = PipelineHost(cache, device="cpu")
    both = job(folder, image_end="end.png")
    start_only = job(folder)
    (video,) = render_job(host, both, tmp_path / "both", "both")
    # The next job, on a smaller canvas than the preset allows a settings file: the host renders it.
    small = replace(start_only.generations[0].request, width=64, height=64)
    after = host.generate(PRESET, small).frames
    fresh = PipelineHost(cache, device="cpu").generate(PRESET, small).frames

    metadata = read_metadata(video.path)
    assert metadata is not None
    assert (metadata["image_start"], metadata["image_end"], metadata["image_prompt_type"]) == (
        "start.png",
        "end.png",
        "SE",
    )
    assert metadata["model_id"] == "wan2.2-i2v-a14b" and metadata["wanfarm"]["loaded"] is True
    decoded = read_mp4(video.path)
    assert (decoded.frame_count, decoded.width, decoded.height) == (5, 256, 256)
    # The end image reaches the render: the same job from the start image alone differs.
    (start_video,) = render_job(host, start_only, tmp_path / "start", "start")
    assert not np.array_equal(decoded.frames, read_mp4(start_video.path).frames)
    # One load served every job, and the hot pipeline kept neither the end image nor the job's switch.
    assert host.loads == 1
    assert np.array_equal(after, fresh)
    hot = host._hot
    assert hot is not None and hot.pipe.config.boundary_ratio == BOUNDARY
