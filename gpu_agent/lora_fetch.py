"""LoRAs uploaded to the farm's object storage, and an agent's cache of the ones it rendered with.

An upload lies under `loras/<sha256>/<name>` (content addressed), and each upload of it leaves a
marker `loras/<sha256>/<name>.uploaded-<ms>` beside it: listing the prefix is enough to tell the
newest upload of a name, with no object read. An agent that does not hold a LoRA in its folders asks
`StoredLoras`, which downloads it once into `<cache>/loras/<sha256>/<name>` and verifies its sha256;
a Hugging Face URL is fetched by `HubLoras` into the hub's own cache layout under `<cache>/loras/hf`.
Both kinds stay within a byte budget, least recently used first (`LoraCache`); what is left is
what the agent reports holding (`LoraCache.held`), for the scheduler.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gpu_agent.storage import ObjectStore
from models.loras import (
    FileDigests,
    LoraFile,
    LoraMismatch,
    LoraNotFound,
    file_sha256,
    held_key,
    hub_file,
    lora_file_name,
)

log = logging.getLogger(__name__)

LORAS_PREFIX = "loras/"
UPLOADED_MARK = ".uploaded-"
SHA256 = re.compile(r"[0-9a-f]{64}")
HUB_FOLDER = "hf"  # under the LoRA cache: the hub's cache layout (models--*/blobs, refs, snapshots)
# LoRAs of 14B models are up to about 1.2 GB: room for a few dozen beside the weights.
DEFAULT_LORA_CACHE_BYTES = 20 * 1024**3
# Agents of one node share the cache: a file another agent touched this recently may be about to
# load there, so the budget never takes it (only files of this agent's job are known for sure).
RECENT_USE_S = 600.0


@dataclass(frozen=True)
class StoredLora:
    """One LoRA in object storage: its file name, content hash, size and latest upload time."""

    name: str
    sha256: str
    size: int
    uploaded_ms: int

    @property
    def key(self) -> str:
        return lora_key(self.sha256, self.name)


def lora_key(sha256: str, name: str) -> str:
    """Where the LoRA with these bytes and this file name is stored."""
    return f"{LORAS_PREFIX}{sha256}/{name}"


def marker_key(sha256: str, name: str, uploaded_ms: int) -> str:
    """The empty object that records one upload of the LoRA, at `uploaded_ms`."""
    return f"{lora_key(sha256, name)}{UPLOADED_MARK}{uploaded_ms}"


def stored_loras(store: ObjectStore) -> list[StoredLora]:
    """Every uploaded LoRA, newest upload first (then by name)."""
    sizes: dict[tuple[str, str], int] = {}
    times: dict[tuple[str, str], int] = {}
    for stored in store.list(LORAS_PREFIX):
        parts = stored.key.removeprefix(LORAS_PREFIX).split("/")
        if len(parts) != 2 or not SHA256.fullmatch(parts[0]):
            continue
        sha256, file_name = parts
        name, mark, when = file_name.partition(UPLOADED_MARK)
        if mark and when.isdigit():
            times[sha256, name] = max(times.get((sha256, name), 0), int(when))
        elif not mark:
            sizes[sha256, file_name] = stored.size
    found = [StoredLora(name, sha, size, times.get((sha, name), 0)) for (sha, name), size in sizes.items()]
    return sorted(found, key=lambda lora: (-lora.uploaded_ms, lora.name, lora.sha256))


def choose_upload(relative: PurePosixPath, uploads: Iterable[StoredLora]) -> StoredLora | None:
    """The upload an entry's file (`lora_file_name`) asks for among `uploads` (newest first):
    "<sha256>/<name>" that one, a bare name the first of that name; None for other paths."""
    exact = relative.parent.name if SHA256.fullmatch(relative.parent.name) else None
    if len(relative.parts) > (2 if exact else 1):
        return None  # uploads have no sub-folders
    return next(
        (lora for lora in uploads if lora.name == relative.name and exact in (None, lora.sha256)), None
    )


class StoredLoras:
    """A second source of LoRAs for `models.loras.LoraLibrary`: the farm's uploads, cached under
    `cache_dir` (one folder per sha256, so two uploads of one name never overwrite each other).

    An `activated_loras` entry "<sha256>/<name>" asks for exactly that upload; a bare name takes
    the newest upload of that name."""

    where = "object storage (loras/*/<name>)"

    def __init__(self, store: ObjectStore, cache_dir: Path, cache: LoraCache | None = None) -> None:
        self.store = store
        self.cache_dir = cache_dir
        self.cache = cache or LoraCache(cache_dir)
        self._digests = self.cache.digests  # cache files already hashed by this process

    def find(self, entry: str) -> LoraFile | None:
        """The cached file of the upload `entry` names, downloaded first if needed; None if none."""
        relative = lora_file_name(entry)
        chosen = self._choose(relative)
        if chosen is None:
            return None
        path = self.cache_dir / chosen.sha256 / chosen.name
        if self._is_verified(path, chosen.sha256):
            self.cache.used(path)
        else:
            self._download(chosen, path)
            self.cache.trim(keep=path)
        return LoraFile(entry, path, chosen.sha256, path.stat().st_size)

    def _choose(self, relative: PurePosixPath) -> StoredLora | None:
        return choose_upload(relative, stored_loras(self.store))

    def _is_verified(self, path: Path, sha256: str) -> bool:
        # A file left by an earlier run of the agent is hashed once, then trusted while unchanged.
        return path.is_file() and self._digests.sha256(path) == sha256

    def _download(self, lora: StoredLora, path: Path) -> None:
        # Into a temporary file beside the target, renamed only once its bytes are the upload's:
        # a cache file is never partial nor wrong, even if the agent dies mid-download.
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".fetching-", dir=path.parent) as work:
            temp = Path(work) / lora.name
            self.store.get_file(lora.key, temp)
            actual = file_sha256(temp)
            if actual != lora.sha256:
                raise LoraMismatch(
                    f"LoRA {lora.name!r} in object storage ({lora.key}) has sha256 {actual}, "
                    "not the one its key names: the stored object is damaged; upload it again"
                )
            temp.replace(path)
        self._digests.remember(path, lora.sha256)


class HubLoras:
    """A LoRA source for `activated_loras` entries that are Hugging Face URLs
    (https://huggingface.co/<owner>/<name>/resolve/<revision>/<path>): downloaded with
    huggingface_hub into the hub's cache layout under `<cache>/hf`, then hashed like any other."""

    where = "the Hugging Face hub"

    def __init__(self, cache: LoraCache) -> None:
        self.cache = cache

    def find(self, entry: str) -> LoraFile | None:
        """The file of the hub URL `entry`, downloaded first if the cache lacks it; None for an
        entry that is no hub URL. LoraNotFound when the hub cannot give it."""
        wanted = hub_file(entry)
        if wanted is None:
            return None
        from huggingface_hub import hf_hub_download  # only agents that fetch from the hub pay it

        try:
            found = hf_hub_download(
                wanted.repo_id,
                wanted.filename,
                revision=wanted.revision,
                cache_dir=self.cache.root / HUB_FOLDER,
            )
        except Exception as error:  # the hub fails in many ways (offline, gated, missing): each names the URL
            raise LoraNotFound(
                f"LoRA {entry!r} could not be fetched from the Hugging Face hub: {error}"
            ) from None
        path = Path(str(found))
        blob = path.resolve()
        sha256 = self.cache.digests.sha256(blob)
        if SHA256.fullmatch(blob.name) and blob.name != sha256:
            # The hub names a large file's blob after its sha256: another content is a damaged copy.
            raise LoraMismatch(
                f"LoRA {entry!r} in the hub cache ({blob}) has sha256 {sha256}, not the {blob.name} "
                "the hub gave: delete that file so it is fetched again"
            )
        self.cache.used(blob)
        self.cache.trim(keep=blob)
        return LoraFile(entry, path, sha256, blob.stat().st_size)


@dataclass(frozen=True)
class CachedFile:
    """One file of the LoRA cache, for the budget: its bytes and when it was last used (mtime)."""

    path: Path
    bytes: int
    used_at: float


class LoraCache:
    """The agent's LoRA cache folder (uploads under <sha256>/<name>, hub files under hf/), kept
    within `budget_bytes` by evicting the least recently used files after each download."""

    def __init__(self, root: Path, budget_bytes: int = DEFAULT_LORA_CACHE_BYTES) -> None:
        self.root = root
        self.budget_bytes = budget_bytes
        self.digests = FileDigests()

    def used(self, path: Path) -> None:
        """Mark the file as used now, for least-recently-used eviction."""
        os.utime(path)

    def files(self) -> list[CachedFile]:
        """The cached files counted against the budget (downloads in flight and the hub's
        pointers, locks and refs are not)."""
        found: list[CachedFile] = []
        if not self.root.is_dir():
            return found
        for path in self.root.rglob("*"):
            parts = path.relative_to(self.root).parts
            if any(part.startswith(".") or part in ("refs", "snapshots") for part in parts):
                continue
            try:
                if path.is_symlink() or not path.is_file():
                    continue
                stat = path.stat()
            except FileNotFoundError:  # evicted by another agent of the node meanwhile
                continue
            found.append(CachedFile(path.resolve(), stat.st_size, stat.st_mtime))
        return found

    def trim(self, keep: Path | None = None, now: float | None = None) -> list[Path]:
        """Evict least recently used files until within budget; returns the files deleted."""
        now = time.time() if now is None else now
        doomed = over_budget(self.files(), self.budget_bytes, {keep.resolve()} if keep else set(), now)
        for path in doomed:
            path.unlink(missing_ok=True)
        if doomed:
            self._drop_dangling_pointers()
            log.info("LoRA cache evicted %s", ", ".join(str(path) for path in doomed))
        return doomed

    def held(self) -> tuple[str, ...]:
        """The LoRAs in the cache, "name@sha256" each, sorted: what the agent reports holding."""
        held: set[str] = set()
        if not self.root.is_dir():
            return ()
        for folder in self.root.iterdir():
            if SHA256.fullmatch(folder.name) and folder.is_dir():
                held.update(held_key(path.name, folder.name) for path in folder.iterdir() if path.is_file())
        for pointer in (self.root / HUB_FOLDER).glob("models--*/snapshots/*/**/*"):
            if pointer.is_file():  # a pointer whose blob is still there
                held.add(held_key(pointer.name, self._hub_sha256(pointer.resolve())))
        return tuple(sorted(held))

    def _hub_sha256(self, blob: Path) -> str:
        # A LoRA is a large file, so the hub names its blob after its sha256 (checked on use).
        return blob.name if SHA256.fullmatch(blob.name) else self.digests.sha256(blob)

    def _drop_dangling_pointers(self) -> None:
        # The hub's snapshot pointers to evicted blobs would otherwise read as present files.
        for pointer in (self.root / HUB_FOLDER).glob("models--*/snapshots/**/*"):
            if pointer.is_symlink() and not pointer.exists():
                pointer.unlink(missing_ok=True)


def lora_cache_budget(configured: int | None) -> int:
    """The LoRA cache's byte budget: as configured, else the node's $WANFARM_LORA_CACHE_GB, else
    DEFAULT_LORA_CACHE_BYTES."""
    if configured is not None:
        return configured
    text = os.environ.get("WANFARM_LORA_CACHE_GB", "").strip()
    if not text:
        return DEFAULT_LORA_CACHE_BYTES
    try:
        gigabytes = float(text)
    except ValueError:
        raise ValueError(f"$WANFARM_LORA_CACHE_GB is {text!r}, not a number of GiB") from None
    if not gigabytes >= 0:
        raise ValueError(f"$WANFARM_LORA_CACHE_GB is {text!r}: give 0 or more GiB")
    return int(gigabytes * 1024**3)


def over_budget(files: Iterable[CachedFile], budget_bytes: int, keep: set[Path], now: float) -> list[Path]:
    """The files to evict, least recently used first, until the rest fit in `budget_bytes`; never
    one in `keep` nor one used in the last RECENT_USE_S seconds."""
    ordered = sorted(files, key=lambda cached: (cached.used_at, str(cached.path)))
    total = sum(cached.bytes for cached in ordered)
    doomed: list[Path] = []
    for cached in ordered:
        if total <= budget_bytes:
            break
        if cached.path in keep or now - cached.used_at < RECENT_USE_S:
            continue
        doomed.append(cached.path)
        total -= cached.bytes
    return doomed


__all__ = [
    "DEFAULT_LORA_CACHE_BYTES",
    "LORAS_PREFIX",
    "CachedFile",
    "HubLoras",
    "LoraCache",
    "StoredLora",
    "StoredLoras",
    "choose_upload",
    "lora_cache_budget",
    "lora_key",
    "marker_key",
    "over_budget",
    "stored_loras",
]
