"""LoRAs as WanGP settings name them: the multiplier schedule of each, and where its file lives.

`parse_loras` reads WanGP's `activated_loras` + `loras_multipliers` into one `LoraRequest` per
LoRA; `LoraLibrary` finds each file in WanGP's folder layout and fingerprints it. Putting the
adapters into a pipeline is models.lora_adapters' job. Nothing here imports torch.

The multiplier syntax, as WanGP reads it: one entry per LoRA, in the order of `activated_loras`,
separated by spaces or new lines (lines starting with '#' are comments, one '|' may separate the
accelerator LoRAs from the others); a missing entry is 1. An entry "a,b,c" spreads its values over
the steps as WanGP steps through them (a running position advanced by len/n a step, in floats);
"x;y" or "x;y;z" gives each guidance phase of the job (`guidance_phases`, on any model: on Wan 2.2
phase 2 or 3 is also where the low-noise expert takes over) its own value or list, spread over the
steps of that phase. A phase starts at the first step whose timestep is at or below its noise level
(switch_threshold, switch_threshold2), so the steps of each phase are known only at render time.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import unquote, urlsplit

from models.preset import ModelPreset, Role, Task


class LoraError(ValueError):
    """A LoRA that a job names cannot be used as asked; the message says which and why."""


class LoraNotFound(LoraError):
    """No file of that name in the model's LoRA folders."""


class LoraMismatch(LoraError):
    """A LoRA file that does not fit the model (made for another family or size)."""


@dataclass(frozen=True)
class LoraPhases:
    """The phases a job's `loras_multipliers` are read in, as WanGP reads them: as many as the job's
    guidance phases (at least 1), whatever the number of experts."""

    count: int = 1
    # The noise levels (0-1000) at and below which phases 2 and 3 start: one fewer than `count`.
    starts: tuple[float, ...] = ()
    # With 3 phases, a two-phase entry "x;y" is widened to x;x;y when 2 (phase 3 starts the
    # low-noise expert), else to x;y;y.
    switch_phase: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or len(self.starts) != self.count - 1:
            raise ValueError(f"{self.count} phase(s) need {self.count - 1} start(s), got {self.starts}")

    def start_steps(self, timesteps: Sequence[float]) -> tuple[int, ...]:
        """The first step of phases 2 (and 3) over these timesteps (len(timesteps): never reached)."""
        return tuple(_first_at_or_below(timesteps, level) for level in self.starts)


ONE_PHASE = LoraPhases()


@dataclass(frozen=True)
class LoraRequest:
    """One LoRA of a job: its file as the settings name it, and its multiplier over the steps."""

    name: str
    multipliers: str = "1"  # this LoRA's entry as written ("0.8", "1,0.5", "1;0")
    # Phased (written with ';'): one value list per phase, each spread over that phase's steps.
    # Otherwise one list spread over all the steps, whichever phase or expert runs them.
    values: tuple[tuple[float, ...], ...] = ((1.0,),)
    phased: bool = False
    steps: int = 1
    phases: LoraPhases = ONE_PHASE

    def weight_at(self, step: int, starts: Sequence[int] = ()) -> float:
        """The multiplier at `step` (0-based); `starts` are the first steps of phases 2 (and 3)
        (`LoraPhases.start_steps`); a phase without one never starts."""
        if not 0 <= step < self.steps:
            raise ValueError(f"step {step} is outside 0..{self.steps - 1}")
        if not self.phased:
            return _spread(self.values[0], step, self.steps)
        if len(starts) > len(self.values) - 1:
            raise ValueError(f"{len(starts)} phase starts for {len(self.values)} phase(s)")
        bounds = [0]
        for start in (*starts, *[self.steps] * (len(self.values) - 1 - len(starts))):
            bounds.append(min(max(start, bounds[-1]), self.steps))
        bounds.append(self.steps)
        phase = next(n for n in range(len(self.values)) if step < bounds[n + 1])
        return _spread(self.values[phase], step - bounds[phase], bounds[phase + 1] - bounds[phase])

    def schedule(self, starts: Sequence[int] = ()) -> tuple[float, ...]:
        """The multiplier of every step, each from the phase that runs it."""
        return tuple(self.weight_at(step, starts) for step in range(self.steps))


@dataclass(frozen=True)
class AppliedLora:
    """A LoRA as a generation really applied it, for the output's record."""

    name: str
    sha256: str
    multipliers: str  # as written
    weights: tuple[float, ...]  # the multiplier set for each step, in step order


def parse_loras(
    activated: list[str], multipliers: str, steps: int, phases: LoraPhases = ONE_PHASE
) -> tuple[LoraRequest, ...]:
    """One LoraRequest per name of `activated` (WanGP's `activated_loras`), with its schedule from
    `multipliers` (WanGP's `loras_multipliers`) over `steps` steps in the job's guidance `phases`.
    Raises ValueError naming the entry at fault."""
    if steps < 1:
        raise ValueError(f"a LoRA schedule needs at least one step, got {steps}")
    _check_names(activated)
    entries = _multiplier_entries(multipliers)
    if len(entries) > len(activated):
        raise ValueError(
            f"loras_multipliers has {len(entries)} multipliers for {len(activated)} LoRA(s) "
            f"in activated_loras: {' '.join(entries)!r}"
        )
    requests = []
    for number, name in enumerate(activated, start=1):
        entry = entries[number - 1] if number <= len(entries) else "1"
        values, phased = _parse_entry(entry, number, name, phases)
        requests.append(LoraRequest(name, entry, values, phased, steps, phases))
    return tuple(requests)


def model_phases(preset: ModelPreset) -> int:
    """How many experts denoise in turn (2 for Wan 2.2 A14B: high noise, then low noise); the
    LoRA multipliers' phases are the job's guidance phases instead (LoraPhases)."""
    return max(1, sum(1 for component in preset.components if component.role is Role.TRANSFORMER))


@dataclass(frozen=True)
class HubFile:
    """A file of a Hugging Face repository at one revision, as an `activated_loras` URL names it."""

    repo_id: str  # "owner/name"
    revision: str  # a branch, tag or commit
    filename: str  # path inside the repository


# WanGP writes hub LoRAs as https://huggingface.co/<owner>/<name>/resolve/<revision>/<path>, with
# an optional "|<folder>" after it naming the sub-folder of the LoRA folder to keep it in.
_HUB_URL = re.compile(r"https://huggingface\.co/([\w.-]+/[\w.-]+)/resolve/([^/|]+)/([^|]+)")


def hub_file(entry: str) -> HubFile | None:
    """The hub file an `activated_loras` entry downloads from; None for a file name or another URL."""
    found = _HUB_URL.fullmatch(entry.strip().partition("|")[0])
    if found is None:
        return None
    repo_id, revision, filename = found.groups()
    path = PurePosixPath(unquote(filename))
    if path.is_absolute() or ".." in path.parts or not path.name:
        return None
    return HubFile(repo_id, unquote(revision), str(path))


@dataclass(frozen=True)
class LoraNeed:
    """A LoRA a queued job names, as the scheduler weighs it: its file name, the sha256 of the
    upload it will get when the farm knows it (None: a hub or folder file, matched by name), and
    the bytes an agent without it fetches."""

    name: str
    sha256: str | None
    bytes: int

    def held_in(self, held: frozenset[str]) -> bool:
        """Whether an agent reporting `held` has this LoRA already: a file of its LoRA folder by
        this name (reported bare; the folder comes first), or this file in its cache."""
        if self.name in held:
            return True
        if self.sha256 is not None:
            return held_key(self.name, self.sha256) in held
        prefix = f"{self.name}@"
        return any(key.startswith(prefix) for key in held)


def held_key(name: str, sha256: str) -> str:
    """How an agent reports a LoRA file it holds."""
    return f"{name}@{sha256}"


def lora_file_name(entry: str) -> PurePosixPath:
    """The relative file an `activated_loras` entry names: a name or sub/path in the LoRA folder, or
    a download URL (WanGP keeps its file name, and a "|sub" folder after it). Absolute paths and
    '..' are refused: a farm reads LoRAs from its own folders only."""
    text = entry.strip()
    if text.startswith(("http://", "https://")):
        url, _, folder = text.partition("|")
        base = PurePosixPath(unquote(urlsplit(url).path)).name
        text = f"{folder.strip()}/{base}" if folder.strip() else base
    text = text.replace("\\", "/")
    path = PurePosixPath(text)
    if not path.name:
        raise ValueError(f"activated_loras entry {entry!r} names no file")
    if path.is_absolute() or (len(text) > 1 and text[1] == ":"):
        raise ValueError(
            f"activated_loras entry {entry!r} is an absolute path; name the file inside the LoRA folder"
        )
    if ".." in path.parts:
        raise ValueError(f"activated_loras entry {entry!r} leaves the LoRA folder ('..')")
    return path


@dataclass(frozen=True)
class LoraFile:
    """A LoRA found on disk."""

    name: str  # as the settings name it
    path: Path
    sha256: str
    bytes: int


class LoraSource(Protocol):
    """Where LoRAs not in the folders are looked for (the farm's uploads); `where` names it in refusals."""

    where: str

    def find(self, entry: str) -> LoraFile | None:
        """The file of `entry` (an `activated_loras` entry) on this machine; None when it has none."""
        ...


class FirstFound:
    """Several LoRA sources asked in turn; the first that has the file wins."""

    def __init__(self, *sources: LoraSource) -> None:
        self.sources = sources
        self.where = ", ".join(source.where for source in sources)

    def find(self, entry: str) -> LoraFile | None:
        for source in self.sources:
            found = source.find(entry)
            if found is not None:
                return found
        return None


class LoraLibrary:
    """LoRA files under one root laid out as WanGP's `loras/` folder (wan/, wan_i2v/, ltxv/, flux/,
    qwen/, ...); the older layout (loras/, loras_i2v/, loras_flux/, ... side by side) and a root
    that holds `loras/` are searched too, then `fallback` when given. A file's sha256 is computed
    once per path, size and mtime."""

    def __init__(self, root: Path | None, fallback: LoraSource | None = None) -> None:
        self.root = root
        self.fallback = fallback
        self.digests = FileDigests()

    def folders(self, preset: ModelPreset) -> list[Path]:
        """The folders searched for this model's LoRAs, first match wins (none without a root)."""
        if self.root is None:
            return []
        folder = family_folder(preset)
        candidates = [self.root / folder, self.root / "loras" / folder, self.root / _LEGACY_FOLDERS[folder]]
        return list(dict.fromkeys(candidates))

    def find(self, name: str, preset: ModelPreset) -> LoraFile:
        """The file `name` (an `activated_loras` entry) for this model, with its sha256."""
        path = self.locate(name, preset)
        if path is not None:
            return LoraFile(name, path, self.sha256(path), path.stat().st_size)
        folders = self.folders(preset)
        found = self.fallback.find(name) if self.fallback is not None else None
        if found is not None:
            return found
        places = [str(folder) for folder in folders] + ([self.fallback.where] if self.fallback else [])
        searched = ", ".join(places) or "no LoRA folder is configured"
        raise LoraNotFound(f"LoRA {name!r} is not in the LoRA folders of {preset.id} (searched: {searched})")

    def locate(self, name: str, preset: ModelPreset) -> Path | None:
        """The file `name` names in this model's LoRA folders, or None (the fallback is not asked)."""
        relative = lora_file_name(name)
        paths = (folder / relative for folder in self.folders(preset))
        return next((path for path in paths if path.is_file()), None)

    def sha256(self, path: Path) -> str:
        """The file's sha256, read again only when its size or mtime changed."""
        return self.digests.sha256(path)

    def names(self) -> tuple[str, ...]:
        """The file names of every LoRA under the root, whichever folder holds them (sorted)."""
        if self.root is None or not self.root.is_dir():
            return ()
        return tuple(sorted({path.name for path in self.root.rglob("*.safetensors") if path.is_file()}))


class NamedFiles:
    """LoRA files handed over with the settings (a queue.zip's), found by their file name."""

    where = "the queue.zip"

    def __init__(self, files: Mapping[str, Path]) -> None:
        self.files = dict(files)
        self.digests = FileDigests()

    def find(self, entry: str) -> LoraFile | None:
        path = self.files.get(str(lora_file_name(entry)))
        if path is None:
            return None
        return LoraFile(entry, path, self.digests.sha256(path), path.stat().st_size)


class FileDigests:
    """Files' sha256, each read once while its size and mtime stay as they were."""

    def __init__(self) -> None:
        self._known: dict[Path, tuple[int, int, str]] = {}

    def sha256(self, path: Path) -> str:
        stamp = _stamp(path)
        known = self._known.get(path.resolve())
        if known is not None and known[:2] == stamp:
            return known[2]
        return self.remember(path, file_sha256(path), stamp)

    def remember(self, path: Path, sha256: str, stamp: tuple[int, int] | None = None) -> str:
        """Record a digest already checked (a file just written from bytes of a known sha256)."""
        self._known[path.resolve()] = (*(stamp or _stamp(path)), sha256)
        return sha256


def file_sha256(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def family_folder(preset: ModelPreset) -> str:
    """The folder under WanGP's LoRA root that holds this model's LoRAs (WanGP's handlers'
    get_lora_dir): Wan splits by size and by image-to-video (Wan 2.2 i2v shares wan/)."""
    types = preset.wangp_model_types
    if preset.family == "wan":
        if preset.task is Task.I2V and model_phases(preset) == 1:
            return "wan_i2v"
        if any("1.3B" in t for t in types):
            return "wan_1.3B"
        # The 5B family: Wan 2.2 TI2V and the editor built on it (Lucy Edit).
        if preset.task is Task.TI2V or any(t.startswith(("ti2v", "lucy_edit")) for t in types):
            return "wan_5B"
        return "wan"
    if preset.family == "hunyuan":
        if any("1_5" in t or "1.5" in t for t in types):
            return "hunyuan_1_5"
        return "hunyuan_i2v" if preset.task is Task.I2V else "hunyuan"
    try:
        return _FAMILY_FOLDERS[preset.family]
    except KeyError:
        raise LoraError(f"{preset.id}: no LoRA folder is known for family {preset.family!r}") from None


# LTX-2: WanGP's ltx2_handler.get_lora_dir, which also holds the distilled LoRA of its second stage.
_FAMILY_FOLDERS = {"ltx": "ltxv", "flux": "flux", "qwen-image": "qwen", "ltx2": "ltx2"}

# Where each folder was before WanGP moved every LoRA under loras/ (its loras_migration).
_LEGACY_FOLDERS = {
    "wan": "loras",
    "wan_i2v": "loras_i2v",
    "wan_1.3B": "loras/1.3B",
    "wan_5B": "loras/5B",
    "hunyuan": "loras_hunyuan",
    "hunyuan_i2v": "loras_hunyuan_i2v",
    "hunyuan_1_5": "loras_hunyuan_1_5",
    "ltxv": "loras_ltxv",
    "flux": "loras_flux",
    "qwen": "loras_qwen",
    "ltx2": "loras/ltx2",  # LTX-2 came after the move: no older folder
}


def _spread(values: tuple[float, ...], position: int, count: int) -> float:
    """Value `position` of `count` steps when `values` are spread over them as WanGP spreads them:
    a float position advanced by len/count a step, so 3 values over 30 steps give 11, 9 and 10
    (the rounding of 0.1 added ten times keeps step 10 on the first value)."""
    if count <= 0:
        return values[0]
    advance = len(values) / count
    position_now = 0.0
    for _ in range(min(max(position, 0), count - 1)):
        position_now += advance
    return values[min(int(position_now), len(values) - 1)]


def _first_at_or_below(timesteps: Sequence[float], level: float) -> int:
    # WanGP compares its float32 timesteps with the level: compared here in float32 too.
    bound = _float32(level)
    return next((i for i, t in enumerate(timesteps) if _float32(t) <= bound), len(timesteps))


def _float32(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", float(value)))[0])


def _check_names(activated: list[str]) -> None:
    seen: set[PurePosixPath] = set()
    for entry in activated:
        path = lora_file_name(entry)
        if path in seen:
            raise ValueError(f"activated_loras names {path} twice")
        seen.add(path)


def _multiplier_entries(text: str) -> list[str]:
    lines = [line.strip() for line in text.replace("\r", "").split("\n")]
    joined = " ".join(line for line in lines if line and not line.startswith("#"))
    if joined.count("|") > 1:
        raise ValueError("loras_multipliers may hold one '|' (after the accelerator LoRAs), not more")
    return joined.replace("|", " ").split()


def _parse_entry(
    entry: str, number: int, name: str, phases: LoraPhases
) -> tuple[tuple[tuple[float, ...], ...], bool]:
    where = f"loras_multipliers entry {number} ({entry!r}, for {name})"
    parts = entry.split(";")
    if len(parts) > phases.count:
        raise ValueError(
            f"{where} gives {len(parts)} phases separated by ';', but this job runs {phases.count} "
            f"guidance phase(s) (guidance_phases), and WanGP reads at most that many"
        )
    values = [_parse_values(part, where) for part in parts]
    if 1 < len(values) < phases.count:
        # As WanGP widens two phases to three: at the low-noise expert's side.
        values = values[:1] + values if phases.switch_phase == 2 else values + values[-1:]
    return tuple(values), len(parts) > 1


def _parse_values(part: str, where: str) -> tuple[float, ...]:
    values = []
    for text in part.split(","):
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{where}: {text!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{where}: {text!r} is not a finite number")
        values.append(value)
    return tuple(values)


__all__ = [
    "ONE_PHASE",
    "AppliedLora",
    "FirstFound",
    "HubFile",
    "LoraError",
    "LoraFile",
    "LoraLibrary",
    "LoraMismatch",
    "LoraNeed",
    "LoraNotFound",
    "LoraPhases",
    "LoraRequest",
    "LoraSource",
    "NamedFiles",
    "family_folder",
    "held_key",
    "hub_file",
    "lora_file_name",
    "model_phases",
    "parse_loras",
]
