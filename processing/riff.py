"""RIFF/WAVE chunks: WanGP keeps an audio output's settings in a WAV's `json` chunk. Plain bytes,
no codec: the metadata reader and the WAV writer both use it."""

from __future__ import annotations

import struct
from pathlib import Path

METADATA_CHUNK = b"json"  # WanGP's fourcc for its settings


def chunks(data: bytes, path: Path) -> list[tuple[bytes, bytes]]:
    """The (fourcc, body) chunks of a RIFF/WAVE file's bytes; ValueError naming `path` otherwise."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path} is not a RIFF/WAVE file")
    found, position = [], 12
    while position + 8 <= len(data):
        fourcc = data[position : position + 4]
        (size,) = struct.unpack_from("<I", data, position + 4)
        start, end = position + 8, position + 8 + size
        if end > len(data):
            raise ValueError(f"{path}: chunk {fourcc!r} runs past the end of the file")
        found.append((fourcc, data[start:end]))
        position = end + (size & 1)  # RIFF pads each chunk to an even size
    return found


def set_chunk(path: Path, fourcc: bytes, payload: bytes) -> None:
    """Rewrite `path` with `payload` as its `fourcc` chunk (replacing one already there)."""
    kept = [(cid, body) for cid, body in chunks(path.read_bytes(), path) if cid != fourcc]
    kept.append((fourcc, payload))
    body = b"WAVE" + b"".join(
        cid + struct.pack("<I", len(data)) + data + (b"\0" if len(data) & 1 else b"") for cid, data in kept
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def read_wav_comment(path: Path) -> str | None:
    """The text of a WAV's `json` chunk, where WanGP keeps its settings; None when it has none."""
    for fourcc, body in chunks(Path(path).read_bytes(), Path(path)):
        if fourcc == METADATA_CHUNK:
            return body.decode("utf-8", errors="replace")
    return None
