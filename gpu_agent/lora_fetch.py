"""LoRAs uploaded to the farm's object storage, and an agent's cache of the ones it rendered with.

An upload lies under `loras/<sha256>/<name>` (content addressed), and each upload of it leaves a
marker `loras/<sha256>/<name>.uploaded-<ms>` beside it: listing the prefix is enough to tell the
newest upload of a name, with no object read. An agent that does not hold a LoRA in its folders asks
`StoredLoras`, which downloads it once into `<cache>/loras/<sha256>/<name>` and verifies its sha256.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gpu_agent.storage import ObjectStore
from models.loras import FileDigests, LoraFile, LoraMismatch, file_sha256, lora_file_name

LORAS_PREFIX = "loras/"
UPLOADED_MARK = ".uploaded-"
SHA256 = re.compile(r"[0-9a-f]{64}")


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


class StoredLoras:
    """A second source of LoRAs for `models.loras.LoraLibrary`: the farm's uploads, cached under
    `cache_dir` (one folder per sha256, so two uploads of one name never overwrite each other).

    An `activated_loras` entry "<sha256>/<name>" asks for exactly that upload; a bare name takes
    the newest upload of that name."""

    where = "object storage (loras/*/<name>)"

    def __init__(self, store: ObjectStore, cache_dir: Path) -> None:
        self.store = store
        self.cache_dir = cache_dir
        self._digests = FileDigests()  # cache files already hashed by this process

    def find(self, entry: str) -> LoraFile | None:
        """The cached file of the upload `entry` names, downloaded first if needed; None if none."""
        relative = lora_file_name(entry)
        chosen = self._choose(relative)
        if chosen is None:
            return None
        path = self.cache_dir / chosen.sha256 / chosen.name
        if not self._is_verified(path, chosen.sha256):
            self._download(chosen, path)
        return LoraFile(entry, path, chosen.sha256, path.stat().st_size)

    def _choose(self, relative: PurePosixPath) -> StoredLora | None:
        exact = relative.parent.name if SHA256.fullmatch(relative.parent.name) else None
        if len(relative.parts) > (2 if exact else 1):
            return None  # uploads have no sub-folders
        return next(
            (
                lora
                for lora in stored_loras(self.store)
                if lora.name == relative.name and exact in (None, lora.sha256)
            ),
            None,
        )

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


__all__ = [
    "LORAS_PREFIX",
    "StoredLora",
    "StoredLoras",
    "lora_key",
    "marker_key",
    "stored_loras",
]
