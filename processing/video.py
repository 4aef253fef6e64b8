"""H.264 MP4 writing and reading, with WanGP's settings metadata in the container's `comment` tag."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from models.soundtrack import Soundtrack
from processing.atomic_file import atomic_target
from processing.audio_track import add_audio_stream, check_soundtrack, mux_audio
from processing.metadata import COMMENT_KEY, encode_metadata

X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
_MAX_CRF = 51


@dataclass(frozen=True, eq=False)
class DecodedVideo:
    """Every frame of a video as RGB uint8 (F, H, W, 3), with its frame rate and size."""

    frames: np.ndarray
    fps: Fraction
    width: int
    height: int
    frame_count: int


@dataclass(frozen=True)
class VideoInfo:
    """What a container header says about its first video stream; nothing is decoded."""

    width: int
    height: int
    fps: Fraction
    frame_count: int
    duration_s: float
    codec: str
    pix_fmt: str


def _check_encode_args(frames: np.ndarray, fps: int, crf: int, preset: str) -> None:
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames must be a numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must have dtype uint8, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames must have shape (F, H, W, 3), got {frames.shape}")
    count, height, width = frames.shape[:3]
    if count == 0:
        raise ValueError("frames holds no frame")
    if width == 0 or height == 0:
        raise ValueError(f"frames have an empty size {width}x{height}")
    if width % 2 or height % 2:
        raise ValueError(f"size {width}x{height} has an odd side; yuv420p needs an even width and height")
    if isinstance(fps, bool) or not isinstance(fps, int) or fps <= 0:
        raise ValueError(f"fps must be a positive integer, got {fps!r}")
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= _MAX_CRF:
        raise ValueError(f"crf must be an integer in [0, {_MAX_CRF}], got {crf!r}")
    if preset not in X264_PRESETS:
        raise ValueError(f"preset {preset!r} is not an x264 preset ({', '.join(X264_PRESETS)})")


def encode_mp4(
    frames: np.ndarray,
    path: Path,
    fps: int,
    crf: int = 18,
    preset: str = "veryfast",
    metadata: dict[str, Any] | None = None,
    audio: Soundtrack | None = None,
) -> None:
    """Encode RGB uint8 frames (F, H, W, 3) to an H.264 yuv420p MP4 at exactly `fps`, atomically,
    with `audio` as an AAC track beside it when given.

    `metadata` is stored as JSON in the container's `comment` tag, where WanGP reads its settings.
    """
    _check_encode_args(frames, fps, crf, preset)
    if audio is not None:
        check_soundtrack(audio)
    comment = None if metadata is None else encode_metadata(metadata)
    height, width = frames.shape[1:3]
    # faststart moves the index to the front so a browser can play the file while downloading it.
    with (
        atomic_target(Path(path)) as temp,
        av.open(str(temp), mode="w", format="mp4", options={"movflags": "faststart"}) as container,
    ):
        if comment is not None:
            container.metadata[COMMENT_KEY] = comment
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        stream.options = {"crf": str(crf), "preset": preset}
        sound = add_audio_stream(container, audio) if audio is not None else None
        for index, frame_array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_array), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None and audio is not None:
            mux_audio(container, sound, audio)


def _video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    if not container.streams.video:
        raise ValueError(f"{path} has no video stream")
    return container.streams.video[0]


def _stream_fps(stream: av.VideoStream, path: Path) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise ValueError(f"{path} does not state a frame rate")
    return Fraction(rate)


def read_mp4(path: Path) -> DecodedVideo:
    """Decode every frame of a video file to RGB uint8 (F, H, W, 3)."""
    path = Path(path)
    with av.open(str(path)) as container:
        stream = _video_stream(container, path)
        fps = _stream_fps(stream, path)
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    if not decoded:
        raise ValueError(f"{path} holds no decodable frame")
    frames = np.stack(decoded)
    count, height, width = frames.shape[:3]
    return DecodedVideo(frames=frames, fps=fps, width=width, height=height, frame_count=count)


def probe_mp4(path: Path) -> VideoInfo:
    """Read size, frame rate, frame count and codec from the container without decoding frames."""
    path = Path(path)
    with av.open(str(path)) as container:
        stream = _video_stream(container, path)
        fps = _stream_fps(stream, path)
        frame_count = stream.frames
        if not frame_count:
            # Some containers leave the count out of the header: count packets, still without decoding.
            frame_count = sum(1 for packet in container.demux(stream) if packet.size)
        if stream.duration is not None and stream.time_base is not None:
            duration_s = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration_s = container.duration / av.time_base
        else:
            duration_s = float(frame_count / fps)
        return VideoInfo(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=fps,
            frame_count=frame_count,
            duration_s=duration_s,
            codec=stream.codec_context.name,
            pix_fmt=stream.codec_context.pix_fmt or "",
        )
