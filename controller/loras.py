"""LoRAs uploaded through the API: checked (a plain *.safetensors name, a real safetensors file),
stored content addressed under `loras/<sha256>/<name>` for agents to fetch, and listed."""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from controller.service import ServiceError
from gpu_agent.lora_fetch import StoredLora, lora_key, marker_key, stored_loras
from gpu_agent.storage import ObjectStore
from models.loras import file_sha256

MAX_LORA_BYTES = 2 * 1024**3  # the largest LoRAs of 14B models are about 1.2 GB
# The safetensors library refuses headers over 100 MB; a LoRA's is a few hundred kB.
MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_NAME_CHARS = 200
PLAIN_NAME = re.compile(r"\w[\w.+ -]*\.safetensors")
NAME_HINT = "name the file like style.safetensors: letters, digits, '_', '-', '+', '.', spaces; no folders"


@dataclass(frozen=True)
class Uploaded:
    """A stored upload, and whether these bytes under this name are new to the farm."""

    lora: StoredLora
    created: bool


def store_lora(storage: ObjectStore, path: Path, name: str, now: float) -> Uploaded:
    """Check the uploaded file and store it under its sha256; the same bytes and name again store
    nothing new, but count as the newest upload of that name. ServiceError names a refusal."""
    check_name(name)
    size = path.stat().st_size
    if size == 0:
        raise ServiceError(422, f"{name} is empty", hint="upload the LoRA's .safetensors file")
    check_safetensors(path, name)
    sha256 = file_sha256(path)
    key = lora_key(sha256, name)
    created = not storage.exists(key)
    if created:
        storage.put_file(key, path, "application/octet-stream")
    uploaded_ms = int(now * 1000)
    storage.put_file(marker_key(sha256, name, uploaded_ms), _empty(path), "application/octet-stream")
    return Uploaded(StoredLora(name, sha256, size, uploaded_ms), created)


def list_loras(storage: ObjectStore) -> list[StoredLora]:
    """The uploaded LoRAs, newest upload first."""
    return stored_loras(storage)


def check_name(name: str) -> None:
    """422 unless `name` is a plain file name ending in .safetensors."""
    if len(name) > MAX_NAME_CHARS or not PLAIN_NAME.fullmatch(name):
        raise ServiceError(422, f"{name!r} is not a plain *.safetensors file name", hint=NAME_HINT)


def check_safetensors(path: Path, name: str) -> None:
    """422 unless the file is laid out as safetensors: an 8-byte little-endian header length, a
    JSON object of that length, and tensors whose data offsets lie within the file."""
    size = path.stat().st_size
    with path.open("rb") as stream:
        prefix = stream.read(8)
        length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else 0
        if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
            raise _not_safetensors(name, "its first 8 bytes are not the length of a header it holds")
        raw = stream.read(length)
    try:
        header = json.loads(raw)
    except ValueError:
        raise _not_safetensors(name, "its header is not JSON") from None
    if not isinstance(header, dict):
        raise _not_safetensors(name, "its header is not a JSON object")
    data_bytes = size - 8 - length
    for tensor, entry in header.items():
        if tensor != "__metadata__" and not _fits(entry, data_bytes):
            raise _not_safetensors(name, f"tensor {tensor!r} has no data_offsets within the file")


def _fits(entry: object, data_bytes: int) -> bool:
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
        return False
    return 0 <= offsets[0] <= offsets[1] <= data_bytes


def _not_safetensors(name: str, why: str) -> ServiceError:
    return ServiceError(
        422, f"{name} is not a safetensors file: {why}", hint="upload the LoRA as saved by safetensors"
    )


def _empty(beside: Path) -> Path:
    # The upload marker holds nothing: its key says it all.
    marker = beside.with_name(beside.name + ".marker")
    marker.write_bytes(b"")
    return marker
