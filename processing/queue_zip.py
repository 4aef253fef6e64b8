"""WanGP queue.zip files: import untrusted ones safely, export ones WanGP can load."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from models.loras import lora_file_name
from processing.atomic_file import atomic_target
from processing.queue_records import (
    ATTACHMENT_KEYS,
    LORA_SUFFIX,
    LORAS_KEY,
    MANIFEST_NAME,
    QueueEntry,
    QueueLimits,
    QueueZipError,
)
from processing.zip_guard import check_members, copy_member, member_name_problem, open_zip

__all__ = [
    "ATTACHMENT_KEYS",
    "QueueEntry",
    "QueueLimits",
    "QueueZipError",
    "export_queue_zip",
    "import_queue_zip",
]

# Already-compressed media gain nothing from deflate: store them to save CPU on big videos.
_STORED_SUFFIXES = frozenset(
    {".mp4", ".mkv", ".webm", ".mov", ".png", ".jpg", ".jpeg", ".webp", ".mp3", ".m4a", ".ogg", ".flac"}
)


def _reference_problem(name: str) -> str | None:
    """Why an attachment reference is not a plain file name at the archive's top level; None if it is."""
    problem = member_name_problem(name)
    if problem:
        return problem
    if "/" in name:
        return "has a folder part (attachments must be plain file names)"
    return None


def _attachment_names(key: str, value: Any, where: str) -> list[str]:
    """The file names an attachment setting references; empty strings mean "no attachment"."""
    items = value if isinstance(value, list) else [value]
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise QueueZipError(f"{where}: {key!r} holds {type(item).__name__} {item!r}, not a file name")
        if not item.strip():
            continue
        problem = _reference_problem(item)
        if problem:
            raise QueueZipError(f"{where}: {key!r} references {item!r}, which {problem}")
        names.append(item)
    return names


def _parse_manifest(raw: bytes) -> list[tuple[int | str | None, dict[str, Any]]]:
    """Check that queue.json is a JSON list of {"id", "params": {...}} objects and return (id, params)."""
    try:
        manifest = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise QueueZipError(f"{MANIFEST_NAME} is not valid UTF-8 JSON: {error}") from error
    if not isinstance(manifest, list):
        raise QueueZipError(f"{MANIFEST_NAME} must be a JSON list of tasks, got {type(manifest).__name__}")
    tasks: list[tuple[int | str | None, dict[str, Any]]] = []
    for index, task in enumerate(manifest):
        where = f"{MANIFEST_NAME} task {index}"
        if not isinstance(task, dict):
            raise QueueZipError(f"{where} is {type(task).__name__}, not an object")
        params = task.get("params")
        if not isinstance(params, dict):
            raise QueueZipError(f"{where} has no 'params' object")
        task_id = task.get("id")
        if isinstance(task_id, bool) or not isinstance(task_id, int | str | None):
            raise QueueZipError(f"{where} has an id of type {type(task_id).__name__}, not int or str")
        tasks.append((task_id, params))
    return tasks


def _extract(
    archive: zipfile.ZipFile,
    members: Sequence[zipfile.ZipInfo],
    work_dir: Path,
    budget: int,
    limits: QueueLimits,
) -> None:
    """Extract `members` into work_dir through a staging folder, so a failure leaves nothing behind."""
    # Folders made here, deepest first, so a failed import can take them back out.
    created = [folder for folder in (work_dir, *work_dir.parents) if not folder.exists()]
    work_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".queue-import-", dir=work_dir))
    try:
        for info in members:
            # "xb": the staging folder is fresh, so an existing file here would mean a bug, never overwrite.
            with open(staging / info.filename, "xb") as target:
                budget -= copy_member(archive, info, target.write, min(limits.max_member_bytes, budget))
        for info in members:
            os.replace(staging / info.filename, work_dir / info.filename)
        staging.rmdir()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:
            if any(folder.iterdir()):
                break
            folder.rmdir()
        raise


def import_queue_zip(
    zip_path: Path,
    work_dir: Path,
    limits: QueueLimits = QueueLimits(),  # noqa: B008 - frozen, so one shared default is safe
) -> list[QueueEntry]:
    """Validate a WanGP queue.zip whole, then extract its referenced attachments into `work_dir`.

    Attachment names in params become absolute paths of the extracted files. A LoRA file the archive
    carries for a task's activated_loras is extracted too, into the entry's `loras`. A refused archive raises
    QueueZipError and writes nothing; an attachment that would overwrite a file raises FileExistsError.
    """
    zip_path = Path(zip_path)
    work_dir = Path(work_dir).resolve()
    with open_zip(zip_path, limits) as archive:
        files = check_members(archive, limits)
        manifest_info = files.get(MANIFEST_NAME)
        if manifest_info is None:
            raise QueueZipError(f"{zip_path.name} has no {MANIFEST_NAME} at its top level")
        if manifest_info.file_size > limits.max_manifest_bytes:
            raise QueueZipError(
                f"{MANIFEST_NAME} is {manifest_info.file_size} bytes, over the "
                f"{limits.max_manifest_bytes}-byte limit"
            )
        raw = bytearray()
        budget = limits.max_total_bytes - copy_member(
            archive, manifest_info, raw.extend, limits.max_manifest_bytes
        )
        tasks = _parse_manifest(bytes(raw))

        wanted: dict[str, zipfile.ZipInfo] = {}
        loras: list[dict[str, zipfile.ZipInfo]] = []
        for index, (task_id, params) in enumerate(tasks):
            where = f"{MANIFEST_NAME} task {index} (id {task_id!r})"
            loras.append(_lora_members(params, files))
            wanted.update(loras[-1])
            for key in ATTACHMENT_KEYS:
                if params.get(key) is None:
                    continue
                for name in _attachment_names(key, params[key], where):
                    if name not in files:
                        raise QueueZipError(
                            f"{where}: {key!r} references {name!r}, which is not in the archive"
                        )
                    wanted[name] = files[name]
        for name in wanted:
            if os.path.lexists(work_dir / name):
                raise FileExistsError(f"{work_dir / name} already exists; import into an empty work folder")
        if wanted:
            _extract(archive, list(wanted.values()), work_dir, budget, limits)

    def localize(value: Any) -> Any:
        if isinstance(value, list):
            return [localize(item) for item in value]
        if isinstance(value, str) and value in wanted:
            return str(work_dir / value)
        return value

    entries: list[QueueEntry] = []
    for (task_id, params), carried in zip(tasks, loras, strict=True):
        localized = dict(params)
        for key in ATTACHMENT_KEYS:
            if localized.get(key) is not None:
                localized[key] = localize(localized[key])
        # activated_loras keeps its names (they are the LoRAs' names in the output's record).
        entries.append(QueueEntry(task_id, localized, {name: work_dir / name for name in carried}))
    return entries


def _lora_members(params: dict[str, Any], files: Mapping[str, zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
    """The archive's top-level .safetensors files that the task's activated_loras names (by file
    name, or as the file of a download URL); entries the settings check refuses are left to it."""
    value = params.get(LORAS_KEY)
    found: dict[str, zipfile.ZipInfo] = {}
    for entry in value if isinstance(value, list) else []:
        try:
            name = lora_file_name(entry) if isinstance(entry, str) else None
        except ValueError:
            continue
        # A name with a folder is looked up in LoRA folders only: uploads have no folders.
        plain = name is not None and len(name.parts) == 1 and name.suffix.lower() == LORA_SUFFIX
        if plain and str(name) in files:
            found[str(name)] = files[str(name)]
    return found


def _as_sources(key: str, value: Any, where: str) -> list[Path] | None:
    """Local files an attachment setting points at; None when the setting holds no attachment."""
    is_list = isinstance(value, list | tuple)
    items = list(value) if is_list else [value]
    sources: list[Path] = []
    for item in items:
        if not isinstance(item, str | os.PathLike):
            raise ValueError(f"{where}: {key!r} holds {type(item).__name__}, not a file path")
        if not str(item).strip():
            continue
        source = Path(item)
        if not source.is_file():
            raise FileNotFoundError(f"{where}: {key!r} points at {source}, which is not a file")
        sources.append(source)
    return sources if sources or is_list else None


def export_queue_zip(entries: Sequence[Mapping[str, Any] | QueueEntry], zip_path: Path) -> None:
    """Write a queue.zip WanGP can load, copying attachments in as ``task{id}_{key}_{i}{ext}``, atomically.

    A Mapping is one task's settings (its id is its 1-based position); a QueueEntry keeps its own id.
    WanGP skips tasks whose settings lack ``model_type``.
    """
    manifest: list[dict[str, Any]] = []
    members: dict[Path, str] = {}
    seen_ids: set[str] = set()
    for position, entry in enumerate(entries, start=1):
        if isinstance(entry, QueueEntry):
            task_id: int | str = entry.id if entry.id is not None else position
            params = dict(entry.params)
        elif isinstance(entry, Mapping):
            task_id, params = position, dict(entry)
        else:
            raise ValueError(f"queue entry {position} is {type(entry).__name__}, not a settings dict")
        if str(task_id) in seen_ids:
            raise ValueError(f"queue entry {position} repeats task id {task_id!r}")
        seen_ids.add(str(task_id))
        where = f"task {task_id!r}"
        for key in ATTACHMENT_KEYS:
            value = params.get(key)
            sources = None if value is None else _as_sources(key, value, where)
            if sources is None:
                continue
            names: list[str] = []
            for index, source in enumerate(sources):
                # One copy per file even when several settings point at it, as WanGP does.
                identity = source.resolve()
                if identity not in members:
                    name = f"task{task_id}_{key}_{index}{source.suffix}"
                    problem = _reference_problem(name)
                    if problem:
                        raise ValueError(f"{where}: attachment name {name!r} {problem}")
                    members[identity] = name
                names.append(members[identity])
            params[key] = names if isinstance(value, list | tuple) else names[0]
        manifest.append({"id": task_id, "params": params})
    try:
        manifest_text = json.dumps(manifest, indent=4)
    except (TypeError, ValueError) as error:
        raise ValueError(f"queue settings are not JSON-serializable: {error}") from error

    with atomic_target(Path(zip_path)) as temp, zipfile.ZipFile(temp, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST_NAME, manifest_text)
        for source, name in members.items():
            stored = source.suffix.lower() in _STORED_SUFFIXES
            archive.write(
                source,
                arcname=name,
                compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED,
            )
