"""Reading WanGP settings from what users hand us: a settings .json (an object or a list), a
queue.zip, an output (.mp4 / .png) whose metadata holds its settings, or a folder of those.
A settings object whose prompt holds several prompts (multi_prompts_gen_type) is one entry each."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from models.attachments import Attachments
from models.prompts import PromptError, expand_prompts
from processing.metadata import read_metadata
from processing.queue_records import QueueZipError

SUFFIXES = (".json", ".zip", ".mp4", ".png", ".wav")


class SettingsFileError(ValueError):
    """A settings source that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class SettingsEntry:
    """One settings object as decoded, where it came from, and which files it may name."""

    source: str  # "file.json", "file.json[2]", "queue.zip#7", "file.json (prompt 2 of 3)"
    data: object
    # A queue.zip's entries name only the files it carries; a .json or an output on the user's own
    # disk names any file they can read, relative to its folder.
    attachments: Attachments
    loras: Mapping[str, Path] = field(default_factory=dict)  # LoRA files a queue.zip carries, by name


def load_settings_files(path: Path, work_dir: Path) -> list[SettingsEntry]:
    """Every settings object in `path`, one per prompt its prompt holds; queue.zip attachments are
    extracted under `work_dir`."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES)
        if not files:
            raise SettingsFileError(f"{path}: no settings files ({', '.join(SUFFIXES)}) in this folder")
        return [entry for file in files for entry in load_settings_files(file, work_dir)]
    return _one_per_prompt(_load_file(path, work_dir))


def _load_file(path: Path, work_dir: Path) -> list[SettingsEntry]:
    if not path.is_file():
        raise SettingsFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _from_json(path)
    if suffix == ".zip":
        from processing.queue_zip import import_queue_zip  # here: reading settings .json needs no zip code

        try:
            entries = import_queue_zip(path, work_dir / path.stem)
        except QueueZipError as error:
            raise SettingsFileError(f"{path}: {error}") from None
        inside = Attachments.inside(work_dir / path.stem)
        return [SettingsEntry(f"{path.name}#{e.id}", e.params, inside, e.loras) for e in entries]
    if suffix in (".mp4", ".png", ".wav"):
        metadata = read_metadata(path)
        if metadata is None:
            raise SettingsFileError(f"{path}: carries no WanGP settings metadata")
        return [SettingsEntry(path.name, metadata, Attachments.local(path.parent))]
    raise SettingsFileError(f"{path}: unsupported file type {suffix!r}; give one of {', '.join(SUFFIXES)}")


def _from_json(path: Path) -> list[SettingsEntry]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise SettingsFileError(
            f"{path}: malformed JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    except UnicodeDecodeError:
        raise SettingsFileError(f"{path}: not a UTF-8 text file") from None
    if isinstance(data, list):
        # A list is a batch of settings objects, or a queue manifest of {"id", "params"} entries.
        items = [item["params"] if _is_manifest_entry(item) else item for item in data]
        if not items:
            raise SettingsFileError(f"{path}: the list of settings is empty")
        local = Attachments.local(path.parent)
        return [SettingsEntry(f"{path.name}[{i}]", item, local) for i, item in enumerate(items)]
    return [SettingsEntry(path.name, data, Attachments.local(path.parent))]


def _is_manifest_entry(item: object) -> bool:
    return isinstance(item, dict) and "params" in item and isinstance(item["params"], dict)


def _one_per_prompt(entries: list[SettingsEntry]) -> list[SettingsEntry]:
    """Each entry once per prompt unit, as WanGP queues one task per line (or paragraph)."""
    expanded: list[SettingsEntry] = []
    problems: list[str] = []
    for entry in entries:
        if not isinstance(entry.data, Mapping):
            expanded.append(entry)  # not a settings object: the schema names it
            continue
        try:
            units = expand_prompts(entry.data)
        except PromptError as error:
            problems.append(f"{entry.source}: {error}")
            continue
        if len(units) == 1:
            expanded.append(replace(entry, data=units[0]))
            continue
        for number, unit in enumerate(units, start=1):
            source = f"{entry.source} (prompt {number} of {len(units)})"
            expanded.append(replace(entry, source=source, data=unit))
    if problems:
        raise SettingsFileError("; ".join(problems))
    return expanded
