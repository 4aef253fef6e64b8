"""SkyReels V2 DF, ChronoEdit and Lucy Edit end to end on their tiny models: `wanfarm render` writes
files a user can open with WanGP's metadata. A farm renders the editors from a queue.zip in
tests/integration/test_family_farms.py."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from controller.cli import main
from processing.image import read_png
from processing.metadata import read_metadata
from processing.video import read_mp4


def write_video(path: Path, frames: int, fps: int = 24) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(frames):
            image = np.zeros((64, 64, 3), np.uint8)
            image[:, : 4 + 5 * i] = (240, 200, 40)  # a bar that grows frame by frame
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def render(cache_dir: Path, settings: dict[str, object], folder: Path, pattern: str) -> Path:
    job = folder / "job.json"
    job.write_text(json.dumps(settings))
    assert main(["render", str(job), "--out", str(folder / "out"), "--cache", str(cache_dir)]) == 0
    [output] = list((folder / "out").glob(pattern))
    return output


def test_skyreels_df_renders_an_mp4_at_its_frame_rate_and_wangps_length(
    tmp_path: Path, cache_dir: Path
) -> None:
    settings = {"model_type": "skyreels-df-tiny", "prompt": "a fox", "resolution": "64x32", "seed": 5}
    # 41 frames render 37, as WanGP's DTT2V rounds a length to the nearest 17+20k.
    video = render(cache_dir, settings | {"video_length": 41}, tmp_path, "*.mp4")
    decoded = read_mp4(video)
    assert (decoded.frame_count, decoded.width, decoded.height, float(decoded.fps)) == (37, 64, 32, 16.0)
    metadata = read_metadata(video)
    assert metadata is not None and metadata["model_type"] == "skyreels-df-tiny"
    assert (
        metadata["video_length"] == 37 and metadata["guidance_scale"] == 6.0 and metadata["flow_shift"] == 8.0
    )


def test_chrono_edit_renders_the_edited_image_as_a_png(tmp_path: Path, cache_dir: Path) -> None:
    Image.new("RGB", (96, 48), (30, 90, 200)).save(tmp_path / "photo.png")
    settings = {"model_type": "chrono-edit-tiny", "prompt": "turn her to the right", "seed": 2}
    image = render(cache_dir, settings | {"image_start": "photo.png", "image_mode": 1}, tmp_path, "*.png")
    # The 64x64 canvas at the 2:1 photo's aspect, each side rounded to 16, as WanGP fits it.
    assert read_png(image).shape == (48, 96, 3)
    metadata = read_metadata(image)
    assert metadata is not None and metadata["model_type"] == "chrono-edit-tiny"
    assert metadata["image_start"] == "photo.png" and metadata["seed"] == 2


def test_lucy_edit_renders_the_edited_video_and_records_its_source(tmp_path: Path, cache_dir: Path) -> None:
    write_video(tmp_path / "clip.mp4", 12)
    settings = {"model_type": "lucy-edit-tiny", "prompt": "make it red", "video_length": 9, "seed": 4}
    video = render(cache_dir, settings | {"video_guide": "clip.mp4"}, tmp_path, "*.mp4")
    decoded = read_mp4(video)
    assert (decoded.frame_count, decoded.width, decoded.height, float(decoded.fps)) == (9, 64, 64, 24.0)
    metadata = read_metadata(video)
    assert metadata is not None and metadata["model_type"] == "lucy-edit-tiny"
    assert metadata["video_guide"] == "clip.mp4" and metadata["video_length"] == 9


def test_lucy_edit_without_its_video_exits_2_naming_the_key(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"model_type": "lucy-edit-tiny", "prompt": "make it red", "video_length": 9}))
    assert main(["render", str(job), "--out", str(tmp_path / "out"), "--cache", str(cache_dir)]) == 2
    assert "video_guide: lucy-edit-tiny edits a video: give it as video_guide" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
