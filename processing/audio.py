"""Audio outputs as WanGP writes them: 16-bit PCM WAV with the settings as JSON in a RIFF chunk
named `json` (WanGP's shared/utils/audio_metadata.py write_wav_text_chunk, its default
stand-alone audio codec "wav"), which WanGP's read_audio_metadata reads back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import av
import numpy as np

from models.soundtrack import Soundtrack
from processing.atomic_file import atomic_target
from processing.audio_track import check_soundtrack
from processing.metadata import encode_metadata
from processing.riff import METADATA_CHUNK, set_chunk

WAV_CODEC = "pcm_s16le"
_LAYOUTS = {1: "mono", 2: "stereo"}


@dataclass(frozen=True)
class AudioInfo:
    """What a decoded audio file holds."""

    sample_rate: int
    channels: int
    samples: int
    codec: str

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate


def encode_wav(track: Soundtrack, path: Path, metadata: dict[str, Any] | None = None) -> None:
    """Write `track` as a 16-bit PCM WAV at its own rate, atomically, with `metadata` in the
    `json` chunk WanGP reads."""
    check_soundtrack(track)
    with atomic_target(Path(path)) as temp:
        with av.open(str(temp), mode="w", format="wav") as container:
            stream = cast(av.AudioStream, container.add_stream(WAV_CODEC, rate=track.rate))
            stream.layout = _LAYOUTS[track.channels]
            # Interleaved 16-bit: the WAV codec's own sample format, rounded as soundfile does.
            pcm = np.round(np.clip(track.samples, -1.0, 1.0) * 32767.0).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(pcm.T.reshape(1, -1)), format="s16", layout=stream.layout
            )
            frame.sample_rate = track.rate
            frame.pts = 0
            container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        if metadata is not None:
            set_chunk(temp, METADATA_CHUNK, encode_metadata(metadata).encode("utf-8"))


def read_audio(path: Path) -> tuple[Soundtrack, AudioInfo]:
    """Decode an audio file's first stream to float samples in [-1, 1] (channels, samples)."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{path} has no audio stream")
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        parts = [frame.to_ndarray() for frame in container.decode(stream)]
        rate, channels = stream.rate, stream.channels
    if not parts:
        raise ValueError(f"{path} holds no decodable audio")
    joined = np.concatenate(parts, axis=1)
    if joined.dtype == np.int16:  # packed s16: one row of interleaved samples
        samples = joined.reshape(-1, channels).T.astype(np.float32) / 32767.0
    else:
        samples = joined.astype(np.float32)
    info = AudioInfo(sample_rate=rate, channels=channels, samples=samples.shape[1], codec=codec)
    return Soundtrack(samples, rate), info
