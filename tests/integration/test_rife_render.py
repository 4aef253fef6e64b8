"""`wanfarm render` with WanGP's temporal_upsampling (the built-in `rife`; a tiny model's job runs a
tiny RIFE, random weights in the released file's layout, built offline into the weight cache): the
mp4 has the frames and the frame rate WanGP gives, and its metadata what WanGP records. WanGP read
at deepbeepmeep/Wan2GP@8681e9f7 (postprocessing/rife)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.cli import main
from processing import rife
from processing.metadata import read_metadata
from processing.video import read_mp4


@pytest.fixture(autouse=True)
def rife_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.mktemp("rife-cache")
    monkeypatch.delenv(rife.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("WANFARM_CACHE", str(cache))
    return cache


def render(settings: dict[str, object], folder: Path, cache_dir: Path) -> Path:
    job = folder / "job.json"
    job.write_text(json.dumps(settings))
    out = folder / "out"
    assert main(["render", str(job), "--out", str(out), "--cache", str(cache_dir)]) == 0
    [video] = out.glob("*.mp4")
    return video


@pytest.mark.parametrize(("value", "frames", "fps"), [("rife2", 17, 32), ("rife4", 33, 64)])
def test_rife_renders_the_frames_and_frame_rate_wangp_gives(
    value: str, frames: int, fps: int, tmp_path: Path, cache_dir: Path, rife_cache: Path
) -> None:
    settings = {"model_type": "wan-tiny", "prompt": "a fox", "resolution": "64x32", "video_length": 9}
    video = render(settings | {"seed": 4, "temporal_upsampling": value}, tmp_path, cache_dir)
    decoded = read_mp4(video)
    assert (decoded.frame_count, decoded.width, decoded.height) == (frames, 64, 32)
    assert float(decoded.fps) == fps  # wan-tiny renders at 16
    metadata = read_metadata(video)
    assert metadata is not None
    assert metadata["temporal_upsampling"] == value and metadata["video_length"] == 9
    assert metadata["wanfarm"]["postprocessors"] == ["rife"]
    assert (rife_cache / "rife" / rife.TINY_FILE).is_file()  # built offline: no hub was needed


def test_a_long_video_is_upsampled_to_wangps_count_across_its_windows(
    tmp_path: Path, cache_dir: Path
) -> None:
    # 25 frames in windows of 9, 8 and 8 new frames: each window doubled from the last frame before.
    settings = {
        "model_type": "wan-ti2v-tiny",
        "prompt": "a fox",
        "video_length": 25,
        "sliding_window_size": 9,
    }
    video = render(settings | {"seed": 3, "temporal_upsampling": "rife2"}, tmp_path, cache_dir)
    decoded = read_mp4(video)
    assert decoded.frame_count == 49 and float(decoded.fps) == 48
