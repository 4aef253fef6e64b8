"""HunyuanVideo 1.5 end to end on its tiny models (models.tiny_hunyuan15): `wanfarm render` writes
videos a user can open with WanGP's metadata, and the pipeline host drives diffusers'
HunyuanVideo15 pipelines (which take no guidance argument and no step callback) with the job's
guidance, per-step progress and cancel, leaving the hot pipeline as it was."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from controller.cli import main
from models.catalogue import get_model
from models.progress import Cancelled, Phase, Progress
from models.request import GenerationRequest
from models.runner import PipelineHost
from models.weights import WeightCache
from processing.metadata import read_metadata
from processing.video import read_mp4

T2V = get_model("hunyuan15-tiny")
REQUEST = GenerationRequest("a red fox in the snow", "blurry", 64, 32, 5, 2, 6.0, 5.0, "euler", 7)


def render(cache_dir: Path, settings: dict[str, object], folder: Path) -> Path:
    job = folder / "job.json"
    job.write_text(json.dumps(settings))
    assert main(["render", str(job), "--out", str(folder / "out"), "--cache", str(cache_dir)]) == 0
    [video] = list((folder / "out").glob("*.mp4"))
    return video


def test_the_tiny_t2v_renders_an_mp4_with_wangps_metadata(tmp_path: Path, cache_dir: Path) -> None:
    settings = {"model_type": "hunyuan15-tiny", "prompt": "a fox", "resolution": "64x32", "seed": 5}
    video = render(cache_dir, settings | {"video_length": 9}, tmp_path)
    decoded = read_mp4(video)
    assert (decoded.frame_count, decoded.width, decoded.height, float(decoded.fps)) == (9, 64, 32, 24.0)
    metadata = read_metadata(video)
    assert metadata is not None
    assert metadata["model_type"] == "hunyuan15-tiny" and metadata["seed"] == 5
    assert metadata["video_length"] == 9 and metadata["guidance_scale"] == 6.0


def test_the_tiny_i2v_renders_from_a_start_image_at_the_size_wangp_gives(
    tmp_path: Path, cache_dir: Path
) -> None:
    Image.new("RGB", (96, 32), (200, 30, 30)).save(tmp_path / "start.png")
    settings = {"model_type": "hunyuan15-i2v-tiny", "prompt": "a fox", "image_start": "start.png", "seed": 3}
    video = render(cache_dir, settings, tmp_path)
    decoded = read_mp4(video)
    # The 64x32 canvas at the 3:1 image's aspect, each side rounded to 16 (WanGP's fit): 80x32;
    # diffusers alone would pick a bucket of its own target size.
    assert (decoded.frame_count, decoded.width, decoded.height) == (5, 80, 32)
    metadata = read_metadata(video)
    assert metadata is not None and metadata["model_type"] == "hunyuan15-i2v-tiny"
    assert metadata["image_start"] == "start.png"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> PipelineHost:
    return PipelineHost(WeightCache(tmp_path_factory.mktemp("weights")))


@pytest.fixture(scope="module")
def first(host: PipelineHost) -> tuple[np.ndarray, list[Progress]]:
    """The module's first render of REQUEST, with the progress it reported."""
    seen: list[Progress] = []
    return host.generate(T2V, REQUEST, on_progress=seen.append).frames, seen


def test_each_step_reports_progress_and_a_cancel_stops_between_steps(
    host: PipelineHost, first: tuple[np.ndarray, list[Progress]]
) -> None:
    frames, seen = first
    assert [p.step for p in seen if p.phase in (Phase.DENOISING, Phase.DECODING)] == [0, 1, 2]

    def cancel_after_one(progress: Progress) -> None:
        if progress.step == 1:
            raise Cancelled

    with pytest.raises(Cancelled):
        host.generate(T2V, REQUEST, on_progress=cancel_after_one)
    # The hot pipeline renders the next job as before the cancel.
    assert np.array_equal(host.generate(T2V, REQUEST).frames, frames)
    assert host.loads == 1


def test_the_jobs_guidance_is_applied_and_the_hot_pipeline_keeps_its_own(
    host: PipelineHost, first: tuple[np.ndarray, list[Progress]]
) -> None:
    frames, _ = first
    # Guidance 1 is one conditional pass a step, as WanGP runs it without CFG.
    assert not np.array_equal(host.generate(T2V, replace(REQUEST, guidance_scale=1.0)).frames, frames)
    hot = host._hot
    assert hot is not None and hot.pipe.guider.guidance_scale == 6.0  # the saved guider's own
    assert host.loads == 1
