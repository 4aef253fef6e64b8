"""The local weight cache: one folder per model, complete or absent.

A model is cached when its folder holds the `.complete` marker, written last; a fetch builds into a
`.partial-*` folder and renames it into place, so an interrupted download never counts as cached.
Sources: the cache itself, then (for tiny models) the offline builder, else the Hugging Face hub.
A per-model file lock keeps two processes on one node from fetching the same model at once.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from models.catalogue import ModelPreset

COMPLETE = ".complete"
# A diffusers repo holds other formats too; fetch only what from_pretrained reads.
HUB_PATTERNS = ["model_index.json", "*/*.json", "*/*.safetensors", "*/*.txt", "*/*.model", "*/*.jinja"]


class WeightsUnavailable(RuntimeError):
    """A model's weights could not be had from any source."""


class WeightCache:
    """Weights of models on this node's disk, under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, preset: ModelPreset) -> Path:
        return self.root / preset.id

    def is_cached(self, preset: ModelPreset) -> bool:
        return (self.folder(preset) / COMPLETE).is_file()

    def cached_ids(self) -> list[str]:
        """Ids of the models whose weights are complete on disk."""
        if not self.root.is_dir():
            return []
        return sorted(p.parent.name for p in self.root.glob(f"*/{COMPLETE}"))

    def ensure(self, preset: ModelPreset) -> Path:
        """The folder of the model's weights, fetching them first when they are not cached."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock(preset):
            if not self.is_cached(preset):
                self._fetch(preset)
        (self.folder(preset) / COMPLETE).touch()  # last use, for eviction later
        return self.folder(preset)

    def _fetch(self, preset: ModelPreset) -> None:
        started = time.monotonic()
        partial = Path(tempfile.mkdtemp(prefix=f".partial-{preset.id}-", dir=self.root))
        try:
            source = _build_tiny(preset, partial) if preset.tiny else _download(preset, partial)
            size = sum(f.stat().st_size for f in partial.rglob("*") if f.is_file())
            record = {"source": source, "bytes": size, "seconds": round(time.monotonic() - started, 3)}
            (partial / COMPLETE).write_text(json.dumps(record))
            final = self.folder(preset)
            if final.exists():  # an earlier incomplete copy
                shutil.rmtree(final)
            partial.rename(final)
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    @contextmanager
    def _lock(self, preset: ModelPreset) -> Iterator[None]:
        with open(self.root / f".lock-{preset.id}", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _build_tiny(preset: ModelPreset, dest: Path) -> str:
    from models.tiny import build_tiny

    build_tiny(preset, dest)
    return "built offline"


def _download(preset: ModelPreset, dest: Path) -> str:
    from huggingface_hub import snapshot_download

    assert preset.repo is not None  # the catalogue gives every real model a repo
    try:
        snapshot_download(
            repo_id=preset.repo, revision=preset.revision, local_dir=dest, allow_patterns=HUB_PATTERNS
        )
    except Exception as error:  # offline, gated, missing revision: all mean "not available here"
        raise WeightsUnavailable(
            f"could not fetch {preset.id} from the Hugging Face hub ({preset.repo}@{preset.revision}): "
            f"{type(error).__name__}: {error}"
        ) from error
    return f"hub:{preset.repo}@{preset.revision}"
