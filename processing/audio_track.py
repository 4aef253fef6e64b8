"""A soundtrack muxed beside the video of an MP4: AAC, at the track's own rate and channels."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from models.soundtrack import Soundtrack

AUDIO_CODEC = "aac"
AUDIO_BITRATE = 192_000
_LAYOUTS = {1: "mono", 2: "stereo"}


def check_soundtrack(track: Soundtrack) -> None:
    """ValueError naming what is wrong with a track before any file is written."""
    samples = track.samples
    if samples.ndim != 2 or samples.shape[0] not in _LAYOUTS or samples.shape[1] == 0:
        raise ValueError(f"a soundtrack is (1 or 2 channels, samples), got shape {samples.shape}")
    if isinstance(track.rate, bool) or not isinstance(track.rate, int) or track.rate <= 0:
        raise ValueError(f"a soundtrack's rate must be a positive integer, got {track.rate!r}")


def add_audio_stream(container: av.container.OutputContainer, track: Soundtrack) -> av.AudioStream:
    """An AAC stream for `track` in `container`; added before the first packet is muxed."""
    stream = container.add_stream(AUDIO_CODEC, rate=track.rate)
    assert isinstance(stream, av.AudioStream)  # an audio codec's stream
    stream.layout = _LAYOUTS[track.channels]
    stream.bit_rate = AUDIO_BITRATE
    stream.codec_context.time_base = Fraction(1, track.rate)
    return stream


def mux_audio(container: av.container.OutputContainer, stream: av.AudioStream, track: Soundtrack) -> None:
    """Encode every sample of `track` into `stream`, then flush the encoder."""
    # Planar float is AAC's input format; PyAV re-chunks to the encoder's frame size.
    planar = np.ascontiguousarray(np.clip(track.samples, -1.0, 1.0).astype(np.float32))
    frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=_LAYOUTS[track.channels])
    frame.sample_rate = track.rate
    frame.pts = 0
    frame.time_base = Fraction(1, track.rate)
    container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
