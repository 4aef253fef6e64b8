"""Audio outputs as WanGP writes them: 16-bit PCM WAV with the settings as JSON in a RIFF chunk
named `json` (WanGP's shared/utils/audio_metadata.py write_wav_text_chunk, its default
stand-alone audio codec "wav"), which WanGP's read_audio_metadata reads back.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import av
import numpy as np

from models.soundtrack import Soundtrack
from processing.atomic_file import atomic_target
from processing.audio_track import check_soundtrack
from processing.metadata import encode_metadata

WAV_CODEC = "pcm_s16le"
METADATA_CHUNK = b"json"  # WanGP's fourcc for its settings
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
            _append_chunk(temp, METADATA_CHUNK, encode_metadata(metadata).encode("utf-8"))


def _chunks(data: bytes, path: Path) -> list[tuple[bytes, bytes]]:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path} is not a RIFF/WAVE file")
    chunks, position = [], 12
    while position + 8 <= len(data):
        fourcc = data[position : position + 4]
        (size,) = struct.unpack_from("<I", data, position + 4)
        start, end = position + 8, position + 8 + size
        if end > len(data):
            raise ValueError(f"{path}: chunk {fourcc!r} runs past the end of the file")
        chunks.append((fourcc, data[start:end]))
        position = end + (size & 1)  # RIFF pads each chunk to an even size
    return chunks


def _append_chunk(path: Path, fourcc: bytes, payload: bytes) -> None:
    """Rewrite `path` with `payload` as its `fourcc` chunk (replacing one already there)."""
    chunks = [(cid, body) for cid, body in _chunks(path.read_bytes(), path) if cid != fourcc]
    chunks.append((fourcc, payload))
    body = b"WAVE" + b"".join(
        cid + struct.pack("<I", len(data)) + data + (b"\0" if len(data) & 1 else b"") for cid, data in chunks
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def read_wav_comment(path: Path) -> str | None:
    """The text of a WAV's `json` chunk, where WanGP keeps its settings; None when it has none."""
    for fourcc, body in _chunks(Path(path).read_bytes(), Path(path)):
        if fourcc == METADATA_CHUNK:
            return body.decode("utf-8", errors="replace")
    return None


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
