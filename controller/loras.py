"""LoRAs uploaded through the API or carried by a queue.zip: checked (a plain *.safetensors name, a
real safetensors file), stored content addressed under `loras/<sha256>/<name>` for agents to fetch,
listed and deleted; and what a job's LoRAs weigh for the scheduler."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from controller.service_error import ServiceError
from controller.store import JobStore
from controller.uploads import active_jobs
from gpu_agent.lora_fetch import StoredLora, choose_upload, lora_key, marker_key, stored_loras
from gpu_agent.storage import ObjectStore
from models.loras import LoraNeed, LoraRequest, file_sha256, hub_file, lora_file_name
from processing.queue_records import LORAS_KEY

MAX_LORA_BYTES = 2 * 1024**3  # the largest LoRAs of 14B models are about 1.2 GB
# The safetensors library refuses headers over 100 MB; a LoRA's is a few hundred kB.
MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_NAME_CHARS = 200
PLAIN_NAME = re.compile(r"\w[\w.+ -]*\.safetensors")
MAX_JOBS_NAMED = 20  # in a refusal to delete a LoRA that jobs name
# A hub file's size is unknown until fetched: the weight of a typical Wan 14B LoRA.
HUB_LORA_BYTES = 300 * 1024**2
NAME_HINT = "name the file like style.safetensors: letters, digits, '_', '-', '+', '.', spaces; no folders"


@dataclass(frozen=True)
class Uploaded:
    """A stored upload, and whether these bytes under this name are new to the farm."""

    lora: StoredLora
    created: bool


def store_lora(storage: ObjectStore, path: Path, name: str, now: float) -> Uploaded:
    """Check the uploaded file and store it under its sha256; the same bytes and name again store
    nothing new, but count as the newest upload of that name. ServiceError names a refusal."""
    check_upload(path, name)
    return _store_checked(storage, path, name, now)


def store_carried(storage: ObjectStore, files: Mapping[str, Path], now: float) -> list[Uploaded]:
    """Store the LoRA files a queue.zip carries, by name, as uploads are: every file is checked
    before any is stored, and a failure part way takes back what was stored."""
    for name, path in files.items():
        check_upload(path, name)
    done: list[Uploaded] = []
    try:
        for name, path in sorted(files.items()):
            done.append(_store_checked(storage, path, name, now))
    except BaseException:
        forget(storage, done)
        raise
    return done


def forget(storage: ObjectStore, uploads: Sequence[Uploaded]) -> None:
    """Take back uploads of a batch that was not stored: their marker, and the file if it was new."""
    for upload in uploads:
        storage.delete_prefix(marker_key(upload.lora.sha256, upload.lora.name, upload.lora.uploaded_ms))
        if upload.created:
            storage.delete_prefix(upload.lora.key)


def delete_lora(storage: ObjectStore, name: str, naming_jobs: Sequence[str]) -> list[StoredLora]:
    """Delete every upload of `name` (each sha256, markers included); 404 when there is none, 409
    while queued or running jobs (`naming_jobs`) name it."""
    check_name(name)
    listed = stored_loras(storage)
    doomed = [lora for lora in listed if lora.name == name]
    if not doomed:
        raise ServiceError(
            404, f"no LoRA {name!r} is uploaded", hint="GET /v1/loras lists the uploaded LoRAs"
        )
    if naming_jobs:
        shown = ", ".join(naming_jobs[:MAX_JOBS_NAMED]) + (
            " ..." if len(naming_jobs) > MAX_JOBS_NAMED else ""
        )
        raise ServiceError(
            409,
            f"LoRA {name} is named by {len(naming_jobs)} queued or running job(s): {shown}",
            hint="cancel those jobs, or wait for them to end, then delete it",
        )
    for lora in doomed:
        # A key is a prefix of its markers' keys, and of the keys of longer names of the same bytes.
        longer = [
            other.name for other in listed if other.sha256 == lora.sha256 and other.name.startswith(name)
        ]
        if longer != [name]:
            raise ServiceError(
                409,
                f"LoRA {name} has the same bytes as {', '.join(n for n in longer if n != name)}, whose "
                "name starts with its name: delete that one first",
            )
        storage.delete_prefix(lora.key)
    return doomed


def jobs_naming(store: JobStore, name: str) -> list[str]:
    """The queued and running jobs whose activated_loras names a file called `name`, oldest first."""
    naming = []
    for job in active_jobs(store):
        entries = job.settings.get(LORAS_KEY)
        if isinstance(entries, list) and any(_file_name(entry) == name for entry in entries):
            naming.append(job.id)
    return naming[::-1]


def check_upload(path: Path, name: str) -> None:
    """422 unless the file is a non-empty safetensors file under a plain *.safetensors name."""
    check_name(name)
    if path.stat().st_size == 0:
        raise ServiceError(422, f"{name} is empty", hint="upload the LoRA's .safetensors file")
    check_safetensors(path, name)


def lora_needs(
    requests: Sequence[LoraRequest], carried: Sequence[Uploaded], uploads: Sequence[StoredLora]
) -> tuple[LoraNeed, ...]:
    """The LoRAs of a job as the scheduler weighs them: an upload (this batch's, or the newest of
    that name, or the one its sha256 names) with its sha256 and size; a hub URL by name at
    HUB_LORA_BYTES; any other by name at no cost (only agents whose folder holds it can run it)."""
    known = [upload.lora for upload in carried] + list(uploads)
    needs = []
    for request in requests:
        relative = lora_file_name(request.name)
        upload = choose_upload(relative, known)
        if upload is not None:
            needs.append(LoraNeed(upload.name, upload.sha256, upload.size))
        else:
            needs.append(LoraNeed(relative.name, None, HUB_LORA_BYTES if hub_file(request.name) else 0))
    return tuple(needs)


def found_nowhere(
    requests: Sequence[LoraRequest],
    carried: Collection[str],
    uploads: Sequence[StoredLora],
    held: Collection[str],
) -> list[str]:
    """The LoRA entries that are in no queue.zip of this batch (`carried`), no upload, no hub URL and
    no agent's LoRA folder or cache (`held`: names the agents report)."""
    uploaded = {lora.name for lora in uploads}
    missing = []
    for request in requests:
        name = lora_file_name(request.name).name
        if name in carried or name in uploaded or name in held or hub_file(request.name):
            continue
        missing.append(request.name)
    return missing


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


def _file_name(entry: object) -> str | None:
    try:
        return lora_file_name(entry).name if isinstance(entry, str) else None
    except ValueError:
        return None


def _store_checked(storage: ObjectStore, path: Path, name: str, now: float) -> Uploaded:
    size = path.stat().st_size
    sha256 = file_sha256(path)
    key = lora_key(sha256, name)
    created = not storage.exists(key)
    if created:
        storage.put_file(key, path, "application/octet-stream")
    uploaded_ms = int(now * 1000)
    storage.put_file(marker_key(sha256, name, uploaded_ms), _empty(path), "application/octet-stream")
    return Uploaded(StoredLora(name, sha256, size, uploaded_ms), created)


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
