"""LTX-2 through `wanfarm render`: the tiny model's video arrives with its soundtrack muxed in, as an
AAC stream of the generated audio's length, and the WanGP settings read back from the file."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from controller.cli import main
from models.soundtrack import Soundtrack
from processing.metadata import read_metadata
from processing.video import encode_mp4, read_mp4

# One AAC frame: the encoder's granularity, by which a muxed track may run past its samples.
AAC_FRAME = 1024


def audio_seconds(path: Path) -> tuple[float, int, int]:
    """The decoded length of the file's audio stream, its rate and channels."""
    with av.open(str(path)) as container:
        [stream] = container.streams.audio
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.rate, stream.rate, stream.codec_context.channels


def test_the_tiny_ltx2_renders_an_mp4_with_its_soundtrack(tmp_path: Path, cache_dir: Path) -> None:
    settings = {"model_type": "ltx2-tiny", "prompt": "waves on a rocky shore", "video_length": 17, "seed": 3}
    (tmp_path / "job.json").write_text(json.dumps(settings))
    out = tmp_path / "out"
    assert main(["render", str(tmp_path / "job.json"), "--out", str(out), "--cache", str(cache_dir)]) == 0
    [video] = list(out.glob("*.mp4"))
    decoded = read_mp4(video)
    assert (decoded.frame_count, decoded.width, decoded.height, decoded.fps) == (17, 64, 64, Fraction(24))
    metadata = read_metadata(video)
    assert metadata is not None
    assert metadata["model_type"] == "ltx2-tiny" and metadata["video_length"] == 17 and metadata["seed"] == 3
    track = metadata["wanfarm"]["audio"]
    assert (track["codec"], track["sample_rate"], track["channels"]) == ("aac", 24000, 2)
    seconds, rate, channels = audio_seconds(video)
    assert (rate, channels) == (24000, 2)
    # The stream holds the generated samples (rounded up to whole AAC frames) ...
    assert track["seconds"] <= seconds <= track["seconds"] + AAC_FRAME / rate
    # ... which last as long as the video, less the audio VAE's causal start (3 of 4 mel frames of
    # its first latent frame: 30 ms).
    assert abs(seconds - 17 / 24) < 0.05


def test_a_soundtrack_keeps_its_samples_through_the_mp4(tmp_path: Path) -> None:
    rate = 24000
    t = np.arange(rate // 2) / rate
    tone = np.stack([np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 660 * t)]).astype(np.float32)
    frames = np.zeros((12, 32, 32, 3), np.uint8)
    path = tmp_path / "tone.mp4"
    encode_mp4(frames, path, fps=24, audio=Soundtrack(0.5 * tone, rate))
    with av.open(str(path)) as container:
        decoded = np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=1)
    assert decoded.shape[0] == 2 and decoded.shape[1] >= tone.shape[1]
    # AAC delays the signal by its priming samples; past them, the tone's level is there.
    left, right = decoded[0, 2048 : rate // 2], decoded[1, 2048 : rate // 2]
    assert abs(np.abs(left).max() - 0.5) < 0.05 and abs(np.abs(right).max() - 0.25) < 0.05


@pytest.mark.parametrize("shape", [(3, 100), (2, 0), (100,)])
def test_a_soundtrack_of_the_wrong_shape_is_refused_before_writing(
    shape: tuple[int, ...], tmp_path: Path
) -> None:
    path = tmp_path / "bad.mp4"
    with pytest.raises(ValueError, match="soundtrack"):
        encode_mp4(np.zeros((2, 32, 32, 3), np.uint8), path, fps=24, audio=Soundtrack(np.zeros(shape), 24000))
    assert not path.exists()
