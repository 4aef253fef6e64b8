"""MP4 encode/decode round trips, metadata in the `comment` tag, argument checks and atomic writes."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from processing.metadata import read_metadata
from processing.video import encode_mp4, probe_mp4, read_mp4

SETTINGS = {"prompt": "a café at dusk, 雨", "seed": 42, "video_length": 9, "guidance_scale": 5.0}


def gradient_frames(count: int = 9, height: int = 48, width: int = 64) -> np.ndarray:
    """Smooth gradients that drift a little per frame: easy for H.264, so errors stay small."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for index in range(count):
        red = x / (width - 1) * 200 + 20
        green = y / (height - 1) * 180 + 30 + index * 2
        blue = (x + y) / (width + height) * 150 + 50
        frames.append(np.stack([red, green, blue], axis=-1))
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def test_round_trip_keeps_frames_size_fps_and_metadata(tmp_path: Path) -> None:
    frames = gradient_frames()
    path = tmp_path / "out.mp4"
    encode_mp4(frames, path, fps=16, metadata=SETTINGS)

    video = read_mp4(path)
    assert video.frame_count == 9
    assert video.frames.shape == (9, 48, 64, 3)
    assert video.frames.dtype == np.uint8
    assert (video.width, video.height) == (64, 48)
    assert video.fps == Fraction(16)
    assert read_metadata(path) == SETTINGS
    # A broken encoder (wrong colours, swapped channels, garbage) would be far off on a smooth gradient.
    error = np.abs(video.frames.astype(np.int16) - frames.astype(np.int16)).mean()
    assert error < 3.0


def test_probe_reads_the_header_without_decoding(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    encode_mp4(gradient_frames(), path, fps=16)
    info = probe_mp4(path)
    assert (info.width, info.height, info.frame_count) == (64, 48, 9)
    assert info.fps == Fraction(16)
    assert info.duration_s == pytest.approx(9 / 16, abs=0.01)
    assert (info.codec, info.pix_fmt) == ("h264", "yuv420p")


def test_comment_tag_is_compact_json_like_wangp(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    encode_mp4(gradient_frames(count=2), path, fps=24, metadata=SETTINGS)
    with av.open(str(path)) as container:
        comment = container.metadata["comment"]
    assert comment == json.dumps(SETTINGS, ensure_ascii=False, separators=(",", ":"))
    assert b"\xa9cmt" in path.read_bytes()  # the MP4 atom mutagen (WanGP) reads


def test_without_metadata_reads_none(tmp_path: Path) -> None:
    path = tmp_path / "plain.mp4"
    encode_mp4(gradient_frames(count=2), path, fps=16)
    assert read_metadata(path) is None


@pytest.mark.parametrize(("height", "width"), [(48, 63), (47, 64), (47, 63)])
def test_odd_sizes_are_refused(tmp_path: Path, height: int, width: int) -> None:
    path = tmp_path / "odd.mp4"
    with pytest.raises(ValueError, match="odd"):
        encode_mp4(np.zeros((2, height, width, 3), np.uint8), path, fps=16)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((2, 48, 64, 3), np.float32), "dtype uint8"),
        (np.zeros((48, 64, 3), np.uint8), "shape"),
        (np.zeros((2, 48, 64, 4), np.uint8), "shape"),
        (np.zeros((0, 48, 64, 3), np.uint8), "no frame"),
    ],
)
def test_bad_frames_are_refused(tmp_path: Path, frames: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_mp4(frames, tmp_path / "bad.mp4", fps=16)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fps": 0}, "fps"),
        ({"fps": 16.5}, "fps"),
        ({"fps": 16, "crf": 52}, "crf"),
        ({"fps": 16, "preset": "warp"}, "preset"),
        ({"fps": 16, "metadata": {"x": object()}}, "JSON"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_mp4(gradient_frames(count=2), tmp_path / "bad.mp4", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_failed_encode_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "out.mp4"
    path.write_bytes(b"previous render")
    calls = 0
    real_from_ndarray = av.VideoFrame.from_ndarray

    def failing_from_ndarray(array: np.ndarray, format: str) -> av.VideoFrame:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("encoder died")
        return real_from_ndarray(array, format=format)

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", failing_from_ndarray)
    with pytest.raises(RuntimeError, match="encoder died"):
        encode_mp4(gradient_frames(), path, fps=16)
    assert path.read_bytes() == b"previous render"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_success_leaves_only_the_final_file(tmp_path: Path) -> None:
    encode_mp4(gradient_frames(count=2), tmp_path / "out.mp4", fps=16)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_read_metadata_refuses_unknown_extensions(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"unsupported file type '\.avi'"):
        read_metadata(path)
