"""The local weight cache: one folder per model, complete or absent.

A model is cached when its folder holds the `.complete` marker, written last; a fetch builds into a
`.partial-*` folder and renames it into place, so an interrupted download never counts as cached.
Sources: the cache itself, then the farm's mirror (injected: models/ knows no storage backend),
then (for tiny models) the offline builder, else the Hugging Face hub. A WanGP definition with a
transformer file of its own caches that one file, fetched by its URL, in a folder of its own id
beside its base model's folder; that base is fetched without the weights the file replaces (its
`<id>~components` folder) unless the whole base is cached already.
A per-model file lock keeps two processes on one node from fetching the same model at once.

With a byte budget, a fetch that overflows it evicts the least recently used models (last use is
the mtime of `.complete`, which `ensure` touches). Several agents on one node share the folder, so
"in use" must be visible across processes: `using()` holds a shared flock on `.inuse-<model>` and
eviction takes it exclusively without waiting, skipping the model when it cannot. The kernel drops
flocks when a process dies, so a crashed agent never pins a model the way a pid marker file would,
and separate opens conflict even within one process, so threads of one agent are covered too.
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Protocol

from models.catalogue import ModelPreset
from models.single_file import file_name

log = logging.getLogger(__name__)

COMPLETE = ".complete"
MIRROR_SOURCE = "mirror"
URL_TIMEOUT_S = 60  # seconds without a byte before a file download gives up
COPY_CHUNK = 1 << 20
# A diffusers repo holds other formats too; fetch only what from_pretrained reads.
HUB_PATTERNS = ["model_index.json", "*/*.json", "*/*.safetensors", "*/*.txt", "*/*.model", "*/*.jinja"]
# The folder of a model fetched without some of its denoisers' weights (their configs are kept).
COMPONENTS = "~components"


class WeightsUnavailable(RuntimeError):
    """A model's weights could not be had from any source."""


class WeightMirror(Protocol):
    """The farm's own copy of model weights, tried before the hub (e.g. an S3 bucket)."""

    def has(self, model_id: str) -> bool:
        """Whether a complete copy of the model is published."""
        ...

    def download(self, model_id: str, dest: Path, without: Sequence[str] = ()) -> None:
        """Write the model's files (a diffusers folder) under `dest`, but for the weights
        (`*.safetensors`) of the subfolders named in `without`."""
        ...


@dataclass(frozen=True)
class Trim:
    """What one budget check did: the models it evicted and the bytes left cached."""

    evicted: tuple[str, ...]
    cached_bytes: int
    budget_bytes: int | None

    @property
    def over_budget(self) -> bool:
        """Still over after evicting all it could: models in use, or one model alone is bigger."""
        return self.budget_bytes is not None and self.cached_bytes > self.budget_bytes


class WeightCache:
    """Weights of models on this node's disk, under `root`, optionally within `budget_bytes`."""

    def __init__(
        self, root: Path, budget_bytes: int | None = None, mirror: WeightMirror | None = None
    ) -> None:
        self.root = root
        self.budget_bytes = budget_bytes
        self.mirror = mirror
        self.last_trim: Trim | None = None  # the budget check of the latest fetch

    def folder(self, preset: ModelPreset) -> Path:
        return self.root / preset.id

    def is_cached(self, preset: ModelPreset, *urls: str) -> bool:
        """Whether the model is complete on disk; with `urls`, as those files."""
        folder = self.folder(preset)
        return _intact(folder) and all((folder / file_name(url)).is_file() for url in urls)

    def has_components(self, preset: ModelPreset, without: Sequence[str]) -> bool:
        """Whether `ensure_components(preset, without)` would fetch nothing."""
        return self.is_cached(preset) or (bool(without) and _intact(self.root / components_id(preset.id)))

    def cached_ids(self) -> list[str]:
        """Ids of the models whose weights are complete on disk."""
        if not self.root.is_dir():
            return []
        # pathlib's "*" matches dot names too: skip the `.partial-*` and `.evicting-*` folders.
        markers = self.root.glob(f"*/{COMPLETE}")
        return sorted(p.parent.name for p in markers if not p.parent.name.startswith("."))

    def cached_bytes(self) -> int:
        """Bytes of all complete models on disk (fetches in flight are not counted)."""
        return sum(_folder_bytes(self.root / model_id) for model_id in self.cached_ids())

    def last_source(self, model_id: str) -> str | None:
        """Where the cached copy of the model came from; None when it is not cached."""
        try:
            record = json.loads((self.root / model_id / COMPLETE).read_text())
        except (OSError, ValueError):
            return None
        source = record.get("source")
        return source if isinstance(source, str) else None

    def fetched_bytes(self, model_id: str) -> int:
        """How many bytes the cached copy of the model took to fetch; 0 when it is not cached."""
        try:
            record = json.loads((self.root / model_id / COMPLETE).read_text())
        except (OSError, ValueError):
            return 0
        size = record.get("bytes")
        return size if isinstance(size, int) else 0

    def ensure(self, preset: ModelPreset, *urls: str) -> Path:
        """The folder of the model's weights, fetching them first when they are not cached; with
        `urls`, a folder holding those files (a definition's own transformers), fetched from them.

        Hold `using(preset.id)` around this and while the files are read, or another agent on the
        node may evict them.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock(preset.id):
            fetched = not self.is_cached(preset, *urls)
            if fetched:
                self._fetch(preset, urls)
            (self.folder(preset) / COMPLETE).touch()  # last use, for eviction
        if fetched:
            self.trim(keep=preset.id)
        return self.folder(preset)

    def ensure_components(self, preset: ModelPreset, without: Sequence[str]) -> Path:
        """A folder of the model's weights but for its subfolders `without`'s own (their configs
        are there): the whole folder when it is cached, else one fetched without them, so a
        definition's own transformer file never costs its base's transformer download.

        Hold `using(components_id(preset.id))` as well as `using(preset.id)` around this."""
        if not without or self.is_cached(preset):
            return self.ensure(preset)
        key = components_id(preset.id)
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock(key):
            fetched = not _intact(self.root / key)
            if fetched:
                self._fetch(preset, without=tuple(without), key=key)
            (self.root / key / COMPLETE).touch()
        if fetched:
            self.trim(keep=key)
        return self.root / key

    @contextmanager
    def using(self, model_id: str) -> Iterator[None]:
        """Keep the model from being evicted, by this process or any other, inside the block."""
        self.root.mkdir(parents=True, exist_ok=True)
        # Waits only while an eviction of this model is under way; `ensure` then fetches anew.
        with _flocked(self.root / f".inuse-{model_id}", fcntl.LOCK_SH):
            yield

    def trim(self, keep: str | None = None) -> Trim:
        """Evict least recently used models, never `keep` or one in use, until within budget."""
        ids = self.cached_ids()
        sizes = {model_id: _folder_bytes(self.root / model_id) for model_id in ids}
        total = sum(sizes.values())
        evicted: list[str] = []
        if self.budget_bytes is not None:
            for model_id in sorted(ids, key=self._last_use):
                if total <= self.budget_bytes:
                    break
                if model_id != keep and self.evict(model_id):
                    total -= sizes[model_id]
                    evicted.append(model_id)
        report = Trim(tuple(evicted), total, self.budget_bytes)
        if evicted:
            log.info("weight cache evicted %s, %d bytes left", ", ".join(evicted), total)
        if report.over_budget:
            log.warning(
                "weight cache holds %d bytes, over its budget of %d: the rest is in use or one model "
                "alone exceeds it",
                total,
                self.budget_bytes,
            )
        self.last_trim = report
        return report

    def evict(self, model_id: str) -> bool:
        """Delete the model's folder unless it is in use or being fetched; whether it was deleted."""
        folder = self.root / model_id
        with (
            _try_exclusive(self.root / f".lock-{model_id}") as not_fetching,
            _try_exclusive(self.root / f".inuse-{model_id}") as not_in_use,
        ):
            if not (not_fetching and not_in_use and folder.is_dir()):
                return False
            # One rename takes it out of the cache at once; the slow delete happens after.
            doomed = Path(tempfile.mkdtemp(prefix=f".evicting-{model_id}-", dir=self.root))
            folder.rename(doomed / model_id)
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    def _last_use(self, model_id: str) -> float:
        try:
            return (self.root / model_id / COMPLETE).stat().st_mtime
        except FileNotFoundError:  # evicted by another agent meanwhile
            return 0.0

    def _fetch(
        self, preset: ModelPreset, urls: tuple[str, ...] = (), without: tuple[str, ...] = (), key: str = ""
    ) -> None:
        started = time.monotonic()
        key = key or preset.id
        partial = Path(tempfile.mkdtemp(prefix=f".partial-{key}-", dir=self.root))
        try:
            if urls:
                source = ", ".join(_download_file(url, partial) for url in urls)
            elif self._mirror_has(preset.id):
                source = self._from_mirror(preset.id, partial, without)
            elif preset.tiny:
                source = _build_tiny(preset, partial)
                for subfolder in without:  # built whole: drop what a component folder leaves out
                    for weights in (partial / subfolder).glob("*.safetensors"):
                        weights.unlink()
            else:
                source = _download(preset, partial, without)
            size = _folder_bytes(partial)
            record = {"source": source, "bytes": size, "seconds": round(time.monotonic() - started, 3)}
            (partial / COMPLETE).write_text(json.dumps(record))
            final = self.root / key
            if final.exists():  # an earlier incomplete copy
                shutil.rmtree(final)
            partial.rename(final)
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    def _mirror_has(self, model_id: str) -> bool:
        if self.mirror is None:
            return False
        try:
            return self.mirror.has(model_id)
        except Exception as error:  # the mirror only saves time: an unreachable one is skipped
            log.warning("weight mirror unavailable for %s, skipping it: %s", model_id, error)
            return False

    def _from_mirror(self, model_id: str, dest: Path, without: Sequence[str] = ()) -> str:
        assert self.mirror is not None
        try:
            self.mirror.download(model_id, dest, without)
        except Exception as error:  # the caller's `finally` removes what was half written
            raise WeightsUnavailable(
                f"could not fetch {model_id} from the weight mirror: {type(error).__name__}: {error}"
            ) from error
        return MIRROR_SOURCE

    @contextmanager
    def _lock(self, model_id: str) -> Iterator[None]:
        with _flocked(self.root / f".lock-{model_id}", fcntl.LOCK_EX):
            yield


@contextmanager
def _flocked(path: Path, kind: int) -> Iterator[None]:
    """Hold a flock of `kind` (shared or exclusive) on `path`, waiting for it, inside the block."""
    with open(path, "a") as handle:
        fcntl.flock(handle, kind)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _try_exclusive(path: Path) -> Iterator[bool]:
    """Hold an exclusive flock on `path` if nobody holds one; yields whether it was taken."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _intact(folder: Path) -> bool:
    """Whether the folder is complete and holds the bytes its fetch wrote: a file cut short (a torn
    write, a full disk) or gone makes the model uncached, so `ensure` fetches it anew instead of
    every load on the node failing (found by the chaos suite). A record without a size is trusted."""
    marker = folder / COMPLETE
    try:
        text = marker.read_text()
    except OSError:
        return False
    try:
        size = json.loads(text).get("bytes")
    except (ValueError, AttributeError):
        return True
    return not isinstance(size, int) or _folder_bytes(folder) - len(text.encode()) == size


def _folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except FileNotFoundError:  # another agent evicted the model while we counted
            pass
    return total


def _build_tiny(preset: ModelPreset, dest: Path) -> str:
    from models.tiny import build_tiny

    build_tiny(preset, dest)
    return "built offline"


def _download_file(url: str, dest: Path) -> str:
    """The file at `url` written into `dest` (a partial folder, renamed into place once whole)."""
    from urllib.request import urlopen

    target = dest / file_name(url)
    try:
        with urlopen(url, timeout=URL_TIMEOUT_S) as response, target.open("wb") as out:
            expected = response.headers.get("Content-Length")
            shutil.copyfileobj(response, out, COPY_CHUNK)
    except (OSError, ValueError, HTTPException) as error:  # URLError is an OSError
        raise WeightsUnavailable(f"could not fetch {url}: {type(error).__name__}: {error}") from error
    written = target.stat().st_size
    # A connection closed early ends the copy without an error: only the length tells.
    if expected is not None and int(expected) != written:
        raise WeightsUnavailable(f"could not fetch {url}: {written} of {expected} bytes arrived")
    return url


def components_id(model_id: str) -> str:
    """The cache folder of `model_id` fetched without some of its denoisers' weights."""
    return model_id + COMPONENTS


def _download(preset: ModelPreset, dest: Path, without: Sequence[str] = ()) -> str:
    from huggingface_hub import snapshot_download

    assert preset.repo is not None  # the catalogue gives every real model a repo
    try:
        snapshot_download(
            repo_id=preset.repo,
            revision=preset.revision,
            local_dir=dest,
            allow_patterns=HUB_PATTERNS,
            ignore_patterns=[f"{subfolder}/*.safetensors" for subfolder in without] or None,
        )
    except Exception as error:  # offline, gated, missing revision: all mean "not available here"
        raise WeightsUnavailable(
            f"could not fetch {preset.id} from the Hugging Face hub ({preset.repo}@{preset.revision}): "
            f"{type(error).__name__}: {error}"
        ) from error
    return f"hub:{preset.repo}@{preset.revision}"
